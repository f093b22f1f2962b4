"""An LLM judge read through token probabilities.

A 135M judge cannot write ratings that parse, but its next-token distribution still ranks
answers: the score is P(yes) / (P(yes) + P(no)) for a yes/no rubric question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from critics.base import Candidate, Verdict
from loop.policy import Conversation, Policy

YES_NO = {"yes": ["Yes", "yes", " Yes", " yes"], "no": ["No", "no", " No", " no"]}


def rubric_conversation(question: str, instruction: str, response: str) -> Conversation:
    text = (
        f"Read the instruction and the response, then answer the question.\n\n"
        f"Instruction: {instruction}\n\nResponse: {response}\n\n"
        f"Question: {question} Answer yes or no."
    )
    return [{"role": "user", "content": text}]


def p_yes(policy: Policy, question: str, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """P(yes) renormalised over yes and no, for each (instruction, response) pair."""
    convs = [rubric_conversation(question, i, r) for i, r in pairs]
    probs = policy.next_token_probs(convs, YES_NO)
    return [p["yes"] / max(p["yes"] + p["no"], 1e-12) for p in probs]


class JudgeCritic:
    def __init__(self, name: str, question: str, threshold: float, policy: Policy) -> None:
        self.name = name
        self.question = question
        self.threshold = threshold
        self.policy = policy

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        scores = p_yes(
            self.policy, self.question, [(c.instruction, c.response) for c in candidates]
        )
        return [
            Verdict(s, s >= self.threshold, f"P(yes)={s:.2f} (threshold {self.threshold:.2f})")
            for s in scores
        ]


def length_bias(scores: Sequence[float], lengths: Sequence[float]) -> dict[str, float]:
    """How far a judge's scores follow response length (in words): Spearman and Pearson
    correlations over the pairs where both values are finite, with their count `n`.

    A correlation needs 3 pairs and some spread in each input; otherwise it is NaN."""
    if len(scores) != len(lengths):
        raise ValueError(f"length_bias: {len(scores)} scores but {len(lengths)} lengths")
    x, y = np.asarray(scores, dtype=float), np.asarray(lengths, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {"spearman": math.nan, "pearson": math.nan, "n": int(keep.sum())}
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        out["spearman"] = float(stats.spearmanr(x, y).statistic)
        out["pearson"] = float(stats.pearsonr(x, y).statistic)
    return out
