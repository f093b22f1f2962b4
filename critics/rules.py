"""Cheap rule checks that catch degenerate samples before any model looks at them.

In the manner of web-data quality filters: length bounds, truncation, n-gram repetition, the
instruction echoed back, refusals and assistant boilerplate, and the wrong language. Each reason
names the rule and the value measured.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from py3langid.langid import MODEL_FILE, LanguageIdentifier
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


# An assistant declining, or speaking about itself instead of answering.
REFUSALS = [
    r"\bas an ai(?: language model| assistant)?\b",
    r"\bi(?:'m| am) (?:just |only )?an ai\b",
    r"\bi(?:'m| am) sorry,? but i (?:can(?:not|'t)|won't|am unable|'m unable)\b",
    r"\bi (?:cannot|can't|won't) (?:help|assist) (?:you|with)\b",
    r"\bi (?:cannot|can't|won't) (?:provide|comply|answer that)\b",
    r"\bi(?:'m| am) (?:unable|not able) to\b",
]
# Filler that chat models wrap around answers; trained on, it spreads into every reply.
BOILERPLATE = [
    r"^\W*(?:sure|certainly|of course|absolutely)\W+here(?:'s| is| are)\b",
    r"\bi hope (?:this|that|these) helps?\b",
    r"\bfeel free to (?:ask|reach out|let me know)\b",
    r"\blet me know if you (?:have|need) (?:any )?(?:other |more |further )?(?:questions|help)\b",
]
_REFUSAL = [re.compile(p, re.IGNORECASE | re.MULTILINE) for p in REFUSALS]
_BOILERPLATE = [re.compile(p, re.IGNORECASE | re.MULTILINE) for p in BOILERPLATE]


def stock_phrase(text: str) -> str | None:
    """The first stock phrase in `text`, as 'refusal: "..."' or 'boilerplate: "..."'."""
    plain = text.replace("\u2019", "'")  # curly apostrophes, as models often write them
    for label, patterns in (("refusal", _REFUSAL), ("boilerplate", _BOILERPLATE)):
        for pattern in patterns:
            found = pattern.search(plain)
            if found:
                return f'{label}: "{found.group(0).strip()}"'
    return None


@functools.cache
def _identifier() -> LanguageIdentifier:
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_codes() -> list[str]:
    """The languages py3langid tells apart."""
    return _identifier().labels


def language_of(text: str) -> tuple[str, float]:
    """py3langid's best language (ISO 639 code) for `text` and its probability."""
    lang, confidence = _identifier().classify(text)
    return lang, confidence


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
        if n_words > self.cfg.max_words:
            return f"too long: {n_words} words > {self.cfg.max_words}"
        if not c.finished and not c.trimmed:
            return f"truncated mid-sentence at the token limit ({c.tokens} tokens)"
        ratio = repeat_ratio(c.response, self.cfg.ngram)
        if ratio > self.cfg.max_repeat_ratio:
            return f"repetitive: {ratio:.2f} of {self.cfg.ngram}-grams repeat"
        echo = echo_score(c.instruction, c.response)
        if echo > self.cfg.max_echo:
            return f"echoes the instruction: ROUGE-L {echo:.2f}"
        return self._check_content(c.response, n_words)

    def _check_content(self, response: str, n_words: int) -> str | None:
        """The opt-in rules: stock phrases and the response's language."""
        if self.cfg.refusals and (phrase := stock_phrase(response)):
            return phrase
        if self.cfg.language and n_words >= self.cfg.language_min_words:
            lang, confidence = language_of(response)
            if lang != self.cfg.language:
                return f"wrong language: {lang} (p={confidence:.2f}), not {self.cfg.language}"
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
