"""Preference pairs from a round's critiqued candidates, in TRL's conversational format.

Each prompt that was sampled more than once can give one pair: its best candidate that passed
every critic against its worst other candidate, when the combined scores are far enough apart.
The critics' combined score is the only preference signal, so a pair is made only where that
score says something: never from ties, missing scores or two copies of the same text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

REASONS = ("one_sample", "no_passing_chosen", "missing_score", "identical", "tie", "below_margin")
# Scores are float sums of weighted critic scores: 0.35 - 0.3 is 0.04999..., not 0.05, and
# 0.1 + 0.2 - 0.3 is not 0; differences this small are read as equal.
_EPS = 1e-9


def _score(row: Mapping[str, Any]) -> float | None:
    s = row.get("combined_score")
    return float(s) if s is not None and math.isfinite(s) else None


def _passed(row: Mapping[str, Any]) -> bool:
    # Budget cuts a candidate that passed every critic; it is still a fine chosen response.
    return row["rejected_by"] in ("", "budget")


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _pick(group: Sequence[Mapping[str, Any]], margin: float) -> tuple[dict | None, str]:
    """(pair, "") for a prompt's candidates in table order, or (None, reason)."""
    if len(group) < 2:
        return None, "one_sample"
    if not any(_passed(r) for r in group):
        return None, "no_passing_chosen"
    scored = [r for r in group if _score(r) is not None]
    passing = [r for r in scored if _passed(r)]
    if not passing:
        return None, "missing_score"
    # max and min keep the first of equal scores, so the table order breaks ties.
    chosen = max(passing, key=_score)
    others = [r for r in scored if r is not chosen]
    if not others:
        return None, "missing_score"
    distinct = [r for r in others if _normalised(r["response"]) != _normalised(chosen["response"])]
    if not distinct:
        return None, "identical"
    rejected = min(distinct, key=_score)
    gap = _score(chosen) - _score(rejected)
    if abs(gap) <= _EPS:
        return None, "tie"
    if gap < margin - _EPS:
        return None, "below_margin"
    return _pair(chosen, rejected, gap), ""


def _pair(chosen: Mapping[str, Any], rejected: Mapping[str, Any], gap: float) -> dict[str, Any]:
    return {
        "prompt_id": chosen["prompt_id"],
        "prompt": [{"role": "user", "content": chosen["instruction"]}],
        "chosen": [{"role": "assistant", "content": chosen["response"]}],
        "rejected": [{"role": "assistant", "content": rejected["response"]}],
        "chosen_id": chosen["id"],
        "rejected_id": rejected["id"],
        "chosen_score": _score(chosen),
        "rejected_score": _score(rejected),
        "margin": gap,
    }


def build_pairs(
    rows: Sequence[Mapping[str, Any]], margin: float
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One pair per prompt_id at most, in order of first appearance, and why the rest made none.

    rows: the round's candidates table (id, prompt_id, instruction, response, combined_score,
    rejected_by). Returns the pairs and a count per reason in REASONS.
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r)
    pairs, reasons = [], dict.fromkeys(REASONS, 0)
    for group in groups.values():
        pair, reason = _pick(group, margin)
        if pair is None:
            reasons[reason] += 1
        else:
            pairs.append(pair)
    return pairs, reasons
