"""Counterfactual bias: would the candidate be judged differently if it were about another group?

For each category a candidate mentions (critics/groups.py), the instruction and the response are
swapped to the counterpart groups (he -> she, Muslim -> Christian) and two readings are compared:
the response's VADER compound sentiment, and the judge's P(yes) for a rubric question on the
instruction and response. A candidate whose judge score moves with the group would be selected
for the group it mentions, so the loop would train that preference in.

The response itself is the same text in both versions, so its sentiment can only move through
the swapped words: VADER's lexicon rates some group words ("blind" -1.7, "straight" +0.9) and
sentiment words swapped with them. The judge reads the whole text and has no such limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from critics.base import Candidate, Verdict
from critics.groups import mentions, swap_with_changes
from critics.judge import p_yes
from loop.config import BiasCriticConfig
from loop.policy import Policy

_VADER = SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER's compound score in [-1, 1]."""
    return float(_VADER.polarity_scores(text)["compound"])


def sentiment_gap(original: str, swapped: str) -> float:
    """How far the compound score moves, in [0, 2]."""
    return abs(sentiment(original) - sentiment(swapped))


@dataclass(frozen=True)
class Probe:
    """One candidate with one category swapped."""

    candidate: int  # index into the scored candidates
    category: str
    changes: tuple[tuple[str, str], ...]  # (old, new) terms, in order
    instruction: str
    response: str


def probes(candidates: Sequence[Candidate]) -> list[Probe]:
    """A probe per candidate and mentioned category whose swap changes the text."""
    out = []
    for i, c in enumerate(candidates):
        categories = dict.fromkeys(cat for cat, _ in mentions(f"{c.instruction}\n{c.response}"))
        for cat in categories:
            instruction, first = swap_with_changes(c.instruction, cat)
            response, second = swap_with_changes(c.response, cat)
            if first or second:
                out.append(Probe(i, cat, tuple(first + second), instruction, response))
    return out


def describe(changes: Sequence[tuple[str, str]], most: int = 3) -> str:
    """'he->she, man->woman (+2 more)': the distinct replacements of a swap."""
    distinct = list(dict.fromkeys(f"{a}->{b}" for a, b in changes))
    more = f" (+{len(distinct) - most} more)" if len(distinct) > most else ""
    return ", ".join(distinct[:most]) + more


class BiasCritic:
    def __init__(self, name: str, cfg: BiasCriticConfig, policy: Policy) -> None:
        self.name = name
        self.cfg = cfg
        self.policy = policy

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        found = probes(candidates)
        # One judge call for every original that has a probe and every swapped version.
        mentioned = sorted({p.candidate for p in found})
        pairs = [(candidates[i].instruction, candidates[i].response) for i in mentioned]
        pairs += [(p.instruction, p.response) for p in found]
        scores = p_yes(self.policy, self.cfg.question, pairs) if pairs else []
        original = dict(zip(mentioned, scores[: len(mentioned)], strict=True))
        swapped = scores[len(mentioned) :]

        by_candidate: dict[int, list[tuple[Probe, float, float]]] = {}
        for p, s in zip(found, swapped, strict=True):
            gaps = (
                sentiment_gap(candidates[p.candidate].response, p.response),
                abs(original[p.candidate] - s),
            )
            by_candidate.setdefault(p.candidate, []).append((p, *gaps))
        return [self._verdict(by_candidate.get(i, []), c) for i, c in enumerate(candidates)]

    def _verdict(self, results: list[tuple[Probe, float, float]], c: Candidate) -> Verdict:
        if not results:
            mentioned = mentions(f"{c.instruction}\n{c.response}")
            reason = "mentions only groups without a counterpart" if mentioned else ""
            return Verdict(1.0, True, reason or "mentions no group")
        # The worst swap sets the score: the larger of its two gaps, each scaled to [0, 1].
        score = 1.0 - max(max(s / 2, j) for _, s, j in results)
        failed = [
            r for r in results if r[1] > self.cfg.max_sentiment_gap or r[2] > self.cfg.max_judge_gap
        ]
        if failed:
            reason = "moves with the group: " + "; ".join(self._explain(*r) for r in failed)
        else:
            reason = self._explain(*max(results, key=lambda r: max(r[1] / 2, r[2])))
        return Verdict(score, not failed and score >= self.cfg.threshold, reason)

    def _explain(self, probe: Probe, s_gap: float, j_gap: float) -> str:
        return (
            f"{probe.category} swap ({describe(probe.changes)}): "
            f"sentiment gap {s_gap:.2f} (limit {self.cfg.max_sentiment_gap:.2f}), "
            f"judge gap {j_gap:.2f} (limit {self.cfg.max_judge_gap:.2f})"
        )
