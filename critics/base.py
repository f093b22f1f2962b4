"""The vocabulary every critic shares: a candidate goes in, a verdict comes out.

A verdict is a score in [0, 1], whether the candidate passes, and a short reason a person can read.
Both records are small and frozen because they cross actor boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Candidate:
    id: str
    prompt_id: str
    source: str  # "seed" or "self-instruct"
    instruction: str
    response: str
    tokens: int
    finished: bool  # the model ended its turn itself
    trimmed: bool = False  # cut at the token limit, then trimmed back to its last full sentence
    reference: str = ""  # the prompt's reference answer, where the task has a checkable one


@dataclass(frozen=True)
class Verdict:
    score: float
    passed: bool
    reason: str
    # Share of this candidate's pairwise comparisons whose verdict held in both orders;
    # None for critics that compare nothing.
    consistent: float | None = None


class Critic(Protocol):
    """Scores each candidate on its own; set-level critics (dedup) have their own interface."""

    name: str

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]: ...
