"""From verdicts to survivors: thresholds first, then near-duplicates, then the budget.

When more candidates pass than the budget allows, the budget takes either the top combined scores
or a maximal-marginal-relevance pick over the candidates' embeddings, which trades a little score
for spread so that one popular kind of answer does not fill the whole round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from critics.base import Verdict


@dataclass(frozen=True)
class Decision:
    combined: float
    survivor: bool
    rejected_by: str  # the first critic that failed it, "budget", or "" for a survivor


def combined_scores(
    verdicts: Mapping[str, Sequence[Verdict]], weights: Mapping[str, float], n: int
) -> list[float]:
    """Weighted mean of the weighted critics' scores, per candidate."""
    total = sum(weights.get(name, 0.0) for name in verdicts)
    if total <= 0:
        return [0.0] * n
    return [
        sum(weights.get(name, 0.0) * v[i].score for name, v in verdicts.items()) / total
        for i in range(n)
    ]


def ranking(scores: Sequence[float]) -> list[int]:
    """Indices best first; ties keep input order so the result is deterministic."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def decide(
    verdicts: Mapping[str, Sequence[Verdict]],  # critic name -> one verdict per candidate, in order
    combined: Sequence[float],
    budget: int,
    strategy: Literal["top", "mmr"] = "top",
    diversity: float = 0.0,
    vectors: np.ndarray | None = None,  # (n, dim) normalised embeddings; needed for "mmr"
) -> list[Decision]:
    """Survivors: candidates that pass every critic, cut to `budget` by `strategy`. A passing
    candidate the budget leaves out is rejected_by "budget"."""
    n = len(combined)
    if strategy == "mmr" and (vectors is None or len(vectors) != n):
        got = "none" if vectors is None else f"{len(vectors)} rows"
        raise ValueError(f"mmr selection needs one embedding per candidate ({n}), got {got}")
    first_fail = [
        next((name for name, v in verdicts.items() if not v[i].passed), "") for i in range(n)
    ]
    passing = [i for i in ranking(combined) if not first_fail[i]]
    if strategy == "mmr" and len(passing) > budget:
        picked = set(mmr(passing, combined, vectors, budget, diversity))
    else:
        picked = set(passing[:budget])
    return [
        Decision(combined[i], i in picked, first_fail[i] or ("" if i in picked else "budget"))
        for i in range(n)
    ]


def mmr(
    ranked: Sequence[int],  # candidate indices, best first
    scores: Sequence[float],
    vectors: np.ndarray,  # (n, dim) normalised
    k: int,
    diversity: float,
) -> list[int]:
    """Maximal marginal relevance, in pick order: next is the candidate with the largest
    (1 - diversity) * score - diversity * (max cosine to those picked). The first pick is the
    best score; ties go to the better-ranked candidate, so diversity 0 is the top-k."""
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"mmr diversity must be within 0..1, got {diversity}")
    if k <= 0 or not ranked:
        return []
    vecs = np.asarray(vectors, dtype=np.float64)[list(ranked)]  # (c, dim)
    relevance = (1.0 - diversity) * np.asarray([scores[i] for i in ranked], dtype=np.float64)
    closest = vecs @ vecs[0]  # (c,) max cosine to the picked set, which starts as the best
    taken = np.zeros(len(ranked), dtype=bool)
    taken[0] = True
    picks = [0]
    while len(picks) < min(k, len(ranked)):
        gain = np.where(taken, -np.inf, relevance - diversity * closest)
        j = int(np.argmax(gain))  # argmax returns the first of equals: the better rank
        picks.append(j)
        taken[j] = True
        closest = np.maximum(closest, vecs @ vecs[j])
    return [ranked[j] for j in picks]


def funnel(decisions: Sequence[Decision], critic_names: Sequence[str]) -> dict[str, int]:
    """How many candidates each step removed, in pipeline order, plus what was left."""
    steps = {"generated": len(decisions)}
    for name in [*critic_names, "budget"]:
        steps[name] = sum(d.rejected_by == name for d in decisions)
    steps["survivors"] = sum(d.survivor for d in decisions)
    return steps
