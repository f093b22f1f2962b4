"""Held-out evaluation: how much of the persona shows without a system prompt, and answer quality.

Three arms answer the same held-out prompts: the base model, the base model told the persona's
system prompt (what prompting alone buys), and the base model with the round's adapter and no
system prompt. Every figure is a mean over prompts with a bootstrap interval.

The persona metric is deliberately not a critic: it counts the config's marker words (whole words,
any case), which no critic sees, so selection cannot be tuned to the yardstick. A degenerate answer
(the same phrase looping) counts as a failure whatever words it contains. Quality is P(yes) from a
fixed judge (the base model) on the eval rubric, so it does not drift with the policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from critics.rules import repeat_ratio, words
from loop.stats import estimate

DEGENERATE_REPEAT = 0.5  # share of repeated word 3-grams above which an answer is a loop


@dataclass(frozen=True)
class PersonaScore:
    markers: int  # marker words found
    degenerate: bool
    adherent: bool  # markers > 0 and not degenerate


def marker_pattern(markers: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(m.lower()) for m in sorted(markers, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b")


def persona_score(text: str, pattern: re.Pattern[str]) -> PersonaScore:
    degenerate = len(words(text)) < 3 or repeat_ratio(text, 3) > DEGENERATE_REPEAT
    hits = len(pattern.findall(text.lower()))
    return PersonaScore(hits, degenerate, hits > 0 and not degenerate)


def summarize(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """One arm's figures from its eval rows, each a mean with its 95% bootstrap interval."""
    columns = {
        "persona": "adherent",
        "markers_per_answer": "markers",
        "degenerate": "degenerate",
        "quality": "quality",
        "accuracy": "correct",
        "tokens_per_answer": "tokens",
        "prompt_tokens": "prompt_tokens",
        "seconds_per_request": "seconds",
    }
    return {
        name: estimate([float(r[column]) for r in rows])
        for name, column in columns.items()
        if rows and all(r.get(column) is not None for r in rows)
    }


def paired_gain(ours: Sequence[dict], theirs: Sequence[dict], column: str) -> dict[str, float]:
    """Mean per-prompt difference ours - theirs in `column`, with its interval. Both arms answered
    the same prompts, so pairing them removes the prompts' own spread from the interval."""
    by_id = {r["id"]: float(r[column]) for r in theirs}
    return estimate([float(r[column]) - by_id[r["id"]] for r in ours if r["id"] in by_id])
