"""From verdicts to survivors: thresholds first, then near-duplicates, then the budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
) -> list[Decision]:
    n = len(combined)
    first_fail = [
        next((name for name, v in verdicts.items() if not v[i].passed), "") for i in range(n)
    ]
    kept = 0
    decisions: dict[int, Decision] = {}
    for i in ranking(combined):
        if first_fail[i]:
            decisions[i] = Decision(combined[i], False, first_fail[i])
        elif kept < budget:
            decisions[i] = Decision(combined[i], True, "")
            kept += 1
        else:
            decisions[i] = Decision(combined[i], False, "budget")
    return [decisions[i] for i in range(n)]


def funnel(decisions: Sequence[Decision], critic_names: Sequence[str]) -> dict[str, int]:
    """How many candidates each step removed, in pipeline order, plus what was left."""
    steps = {"generated": len(decisions)}
    for name in [*critic_names, "budget"]:
        steps[name] = sum(d.rejected_by == name for d in decisions)
    steps["survivors"] = sum(d.survivor for d in decisions)
    return steps
