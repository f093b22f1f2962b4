"""Cheap rule checks that catch degenerate samples before any model looks at them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rouge_score import rouge_scorer

from critics.base import Candidate, Verdict
from loop.config import RulesCriticConfig

_WORD = re.compile(r"\w+(?:'\w+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeat_ratio(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, near 1 for a loop."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


_ROUGE = rouge_scorer.RougeScorer(["rougeL"])


def echo_score(instruction: str, response: str) -> float:
    """ROUGE-L F1 between instruction and response: 1.0 when the response just repeats it."""
    return _ROUGE.score(instruction, response)["rougeL"].fmeasure


class RulesCritic:
    def __init__(self, name: str, cfg: RulesCriticConfig) -> None:
        self.name = name
        self.cfg = cfg

    def check(self, c: Candidate) -> str | None:
        """The first rule the candidate breaks, as a reason; None if it breaks none."""
        n_words = len(words(c.response))
        if n_words == 0:
            return "empty response"
        if n_words < self.cfg.min_words:
            return f"too short: {n_words} words < {self.cfg.min_words}"
        if not c.finished and not c.trimmed:
            return f"truncated mid-sentence at the token limit ({c.tokens} tokens)"
        ratio = repeat_ratio(c.response, self.cfg.ngram)
        if ratio > self.cfg.max_repeat_ratio:
            return f"repetitive: {ratio:.2f} of {self.cfg.ngram}-grams repeat"
        echo = echo_score(c.instruction, c.response)
        if echo > self.cfg.max_echo:
            return f"echoes the instruction: ROUGE-L {echo:.2f}"
        return None

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        verdicts = []
        for c in candidates:
            broken = self.check(c)
            if broken is None:
                verdicts.append(Verdict(1.0, True, "passes all rules"))
            else:
                verdicts.append(Verdict(0.0, False, broken))
        return verdicts
