"""A pairwise judge: which of two responses to one instruction is better, A or B.

The answer is read from the judge's next-token probabilities of "A" and "B", renormalised over
the two. Small judges lean towards one position whatever the content, so every pair is asked in
both orders and the two readings are averaged: a judge with pure position bias then says 0.5.
A pair is order-consistent when both orders prefer the same response.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from critics.base import Candidate, Verdict
from loop.policy import Conversation, Policy

# Each string is one token in the SmolLM2 tokenizer; lower-case "a" would be the article.
A_B = {"A": ["A", " A"], "B": ["B", " B"]}


@dataclass(frozen=True)
class PairResult:
    """The judge on (instruction, a, b). `a_first` is P(A) with a shown as A; `a_second` is
    P(B) with a shown as B; `win` is their mean, the probability that a is the better one."""

    win: float
    a_first: float
    a_second: float
    consistent: bool  # both orders prefer the same response (a tie in either is not)


def pairwise_conversation(
    question: str, instruction: str, response_a: str, response_b: str
) -> Conversation:
    text = (
        "Read the instruction and the two responses, then answer the question.\n\n"
        f"Instruction: {instruction}\n\nResponse A: {response_a}\n\nResponse B: {response_b}\n\n"
        f"Question: {question} Answer A or B."
    )
    return [{"role": "user", "content": text}]


def _p_a(probs: dict[str, float]) -> float:
    return probs["A"] / max(probs["A"] + probs["B"], 1e-12)


def combine(a_first: float, a_second: float) -> PairResult:
    """One pair's result from P(a better) read with a shown first and with a shown second."""
    consistent = (a_first > 0.5 and a_second > 0.5) or (a_first < 0.5 and a_second < 0.5)
    return PairResult((a_first + a_second) / 2, a_first, a_second, consistent)


def compare(
    policy: Policy,
    question: str,
    triples: Sequence[tuple[str, str, str]],
    batch_size: int = 16,
) -> list[PairResult]:
    """For each (instruction, response_a, response_b): the judge asked in both orders."""
    convs = []
    for instruction, a, b in triples:
        convs.append(pairwise_conversation(question, instruction, a, b))
        convs.append(pairwise_conversation(question, instruction, b, a))
    probs = policy.next_token_probs(convs, A_B, batch_size)
    # (a, b) then (b, a) per triple: a wins as A in the first, as B in the second.
    return [combine(_p_a(probs[i]), 1.0 - _p_a(probs[i + 1])) for i in range(0, len(probs), 2)]


def position_consistency(results: Sequence[PairResult]) -> float:
    """Share of pairs whose preference held in both orders; NaN for no pairs."""
    if not results:
        return math.nan
    return sum(r.consistent for r in results) / len(results)


def sibling_pairs(candidates: Sequence[Candidate]) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, of candidates that answer the same prompt."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(candidates):
        groups[c.prompt_id].append(i)
    return [pair for g in groups.values() for pair in itertools.combinations(g, 2)]


@dataclass
class PairwiseCritic:
    """Scores a candidate by its mean win probability against its siblings (the other responses
    to the same prompt in this batch). A candidate with no sibling scores 0.5 and passes."""

    name: str
    question: str
    threshold: float
    policy: Policy

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        pairs = sibling_pairs(candidates)
        triples = [
            (candidates[i].instruction, candidates[i].response, candidates[j].response)
            for i, j in pairs
        ]
        results = compare(self.policy, self.question, triples) if triples else []
        # Each candidate's (win probability, consistent) over the comparisons it took part in.
        seen: list[list[tuple[float, bool]]] = [[] for _ in candidates]
        for (i, j), r in zip(pairs, results, strict=True):
            seen[i].append((r.win, r.consistent))
            seen[j].append((1.0 - r.win, r.consistent))
        return [self._verdict(s) for s in seen]

    def _verdict(self, seen: list[tuple[float, bool]]) -> Verdict:
        if not seen:
            return Verdict(0.5, True, "no sibling to compare")  # nothing to judge it against
        win = sum(w for w, _ in seen) / len(seen)
        agree = sum(c for _, c in seen)
        siblings = f"{len(seen)} sibling{'s' if len(seen) > 1 else ''}"
        reason = f"wins {win:.2f} against {siblings}; order-consistent {agree}/{len(seen)}"
        return Verdict(win, win >= self.threshold, reason, agree / len(seen))
