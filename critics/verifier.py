"""The verifier: for tasks with a checkable answer, compare the response's final answer with the
prompt's reference answer.

numeric: the reference's number is the one after "####" (GSM8K's convention) if present, else its
last number; the response's is the one after "The answer is" or "####" if present, else its last
number. Commas and dollar signs are dropped and the two are compared as floats.
exact: the normalised texts (lower case, punctuation and extra space removed) are equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from critics.base import Candidate, Verdict
from generators.pool import normalise

Checker = Literal["exact", "numeric"]

# A minus right after a word or ")" is subtraction ("16-3"), not a sign.
_NUMBER = r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_ANY_NUMBER = re.compile(_NUMBER)
# The last stated final answer wins: a model may correct itself.
_STATED = re.compile(rf"(?:the answer is|####)\s*:?\s*({_NUMBER})", re.IGNORECASE)


def _clean(number: str) -> str:
    return number.replace(",", "")


def last_number(text: str) -> str | None:
    found = _ANY_NUMBER.findall(text.replace("$", ""))
    return _clean(found[-1]) if found else None


def reference_number(reference: str) -> str | None:
    """The number after "####" if there is one, else the reference's last number."""
    _, mark, tail = reference.rpartition("####")
    found = _ANY_NUMBER.search(tail.replace("$", "")) if mark else None
    return _clean(found.group(0)) if found else last_number(reference)


def response_number(response: str) -> str | None:
    """The number after the last "The answer is" / "####", else the response's last number."""
    stated = _STATED.findall(response.replace("$", ""))
    return _clean(stated[-1]) if stated else last_number(response)


def _check_numeric(response: str, reference: str) -> tuple[bool, str]:
    want = reference_number(reference)
    if want is None:
        return False, "no number in the reference answer"
    got = response_number(response)
    if got is None:
        return False, "no number in the response"
    if math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-6):
        return True, f"answer {got} matches the reference {want}"
    return False, f"answer {got} but the reference is {want}"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_exact(response: str, reference: str) -> tuple[bool, str]:
    got, want = normalise(response), normalise(reference)
    if got == want:
        return True, f"answer '{_shorten(got)}' matches the reference"
    return False, f"answer '{_shorten(got)}' but the reference is '{_shorten(want)}'"


def check(response: str, reference: str, checker: Checker) -> tuple[bool, str]:
    """Whether `response` gives the reference answer, and a reason saying what was compared."""
    if not reference.strip():
        return False, "no reference answer"
    if checker == "numeric":
        return _check_numeric(response, reference)
    if checker == "exact":
        return _check_exact(response, reference)
    raise ValueError(f"unknown checker {checker!r}: use 'numeric' or 'exact'")


class VerifierCritic:
    def __init__(self, name: str, checker: Checker, threshold: float) -> None:
        self.name = name
        self.checker = checker
        self.threshold = threshold

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        verdicts = []
        for c in candidates:
            ok, reason = check(c.response, c.reference, self.checker)
            score = 1.0 if ok else 0.0
            verdicts.append(Verdict(score, score >= self.threshold, reason))
        return verdicts
