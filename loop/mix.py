"""Real examples next to the synthetic ones: a JSONL file of human-written instruction/response
pairs, and the mix of a round's survivors with a share of them.

Real rows take the survivors' TRL shape (prompt/completion conversations plus id, instruction,
response) with source "real", so the trainer and `selfloop show` treat and mark them alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from generators.pool import _text_field
from loop.errors import ConfigError
from loop.jsonl import read_objects

REAL = "real"  # the source of every row that came from train.real_file


def load_real(path: str | Path, key: str = "train.real_file") -> list[dict[str, Any]]:
    """Training rows from a JSONL file whose lines hold non-empty `instruction` and `response`
    text and optionally an `id` (default "real-<line>"). Errors name the file and line."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, line in read_objects(path, key):
        where = f"{path}:{number}"
        instruction = _text_field(line, "instruction", where, "").strip()
        response = _text_field(line, "response", where, "").strip()
        rid = str(line.get("id") or f"{REAL}-{number:04d}")
        if rid in seen:
            raise ConfigError(f"{where}: id {rid!r} is used at line {seen[rid]} too: rename one")
        seen[rid] = number
        rows.append(
            {
                "id": rid,
                "prompt_id": rid,
                "source": REAL,
                "instruction": instruction,
                "response": response,
                "prompt": [{"role": "user", "content": instruction}],
                "completion": [{"role": "assistant", "content": response}],
            }
        )
    if not rows:
        raise ConfigError(f"'{key}': {path} holds no examples: add instruction/response lines")
    return rows


def real_count(synthetic: int, share: float) -> int:
    """Real rows that make up `share` of a set with `synthetic` other rows, to the nearest whole
    row. share 1 is the limit: the synthetic rows are left out and as many real rows trained on,
    so the set keeps its size."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], not {share}")
    if share == 1.0:
        return synthetic
    return round(share * synthetic / (1.0 - share))


def _sample(rows: Sequence[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """n rows without replacement while the file lasts; past that, another shuffled pass, so each
    row is used k or k + 1 times. A row's later uses get ids ending in "~2", "~3", ..."""
    picked: list[dict[str, Any]] = []
    passes = 0
    while len(picked) < n:
        passes += 1
        take = rng.sample(list(rows), min(len(rows), n - len(picked)))
        picked += take if passes == 1 else [r | {"id": f"{r['id']}~{passes}"} for r in take]
    return picked


def mix(
    synthetic_rows: Sequence[dict[str, Any]],
    real_rows: Sequence[dict[str, Any]],
    share: float,
    seed: int,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The round's training rows: the synthetic rows, then real rows sampled (by `seed`) so that
    they make up `share` of the result (see real_count), and the counts {synthetic, real,
    real_repeats} (real_repeats: real rows used a second time or more, as the file was short).

    Real rows get every column the synthetic rows have, None where they have no value (such as
    combined_score), so the mixed rows save as one table."""
    want = real_count(len(synthetic_rows), share)
    if want and not real_rows:
        raise ValueError(f"share {share} needs real rows, and none were given")
    kept = [] if share == 1.0 else list(synthetic_rows)
    blank = dict.fromkeys(synthetic_rows[0], None) if synthetic_rows else {}
    real = [blank | r for r in _sample(real_rows, want, random.Random(seed))]
    counts = {
        "synthetic": len(kept),
        "real": len(real),
        "real_repeats": max(0, want - len(real_rows)),
    }
    return kept + real, counts
