"""Held-out evaluation: how much of the persona shows without a system prompt, and answer quality.

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


def summarize(rows: Sequence[dict]) -> dict[str, float]:
    """Figures for one arm from its eval rows (persona, markers, degenerate, quality, tokens)."""
    n = max(len(rows), 1)
    return {
        "persona": sum(r["adherent"] for r in rows) / n,
        "markers_per_answer": sum(r["markers"] for r in rows) / n,
        "degenerate": sum(r["degenerate"] for r in rows) / n,
        "quality": sum(r["quality"] for r in rows) / n,
        "tokens_per_answer": sum(r["tokens"] for r in rows) / n,
        "prompts": len(rows),
    }
