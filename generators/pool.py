"""Instruction pools: the seed file a run starts from and the held-out prompts it is judged on.

Any JSONL file whose lines carry an instruction field works (the project's own seeds, the
Self-Instruct seed tasks, or GSM8K's `question` with its `answer` as the reference). Instances with
an `input` are folded into the instruction. A row slice lets seeds and held-out prompts come from
one file without overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from loop.config import row_range
from loop.errors import ConfigError
from loop.jsonl import read_objects


@dataclass(frozen=True)
class Prompt:
    id: str
    instruction: str
    source: str  # "seed", "self-instruct" or "heldout"
    reference: str = ""  # the reference answer, for tasks with a checkable one


def normalise(text: str) -> str:
    """Lower case, punctuation and extra space removed: equal instructions compare equal."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _instruction_of(row: dict, field: str) -> str:
    text = row[field].strip()
    instances = row.get("instances")
    first = instances[0] if isinstance(instances, list) and instances else {}
    extra = first.get("input") if isinstance(first, dict) else None
    extra = extra.strip() if isinstance(extra, str) else ""
    return f"{text}\n\n{extra}" if extra else text


def _rows(path: Path, key: str, rows: str) -> list[tuple[int, dict]]:
    """(line number, object) of the file's rows in the `rows` slice of its non-blank lines."""
    numbered = list(read_objects(path, key))
    lo, hi = row_range(rows)
    if rows and (hi or lo + 1) > len(numbered):
        section = key.split(".")[0]
        raise ConfigError(
            f"'{section}.rows' = {rows!r} but {path} holds {len(numbered)} rows: "
            "choose a slice inside the file"
        )
    return numbered[lo:hi]


def _text_field(row: dict, field: str, where: str, hint: str, numbers: bool = False) -> str:
    value = row.get(field)
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # a reference answer written as a JSON number
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: a line needs the '{field}' field holding non-empty text{hint}")
    return value


def load_prompts(
    path: str | Path,
    source: str,
    key: str,
    instruction_field: str = "instruction",
    reference_field: str = "",
    rows: str = "",
) -> list[Prompt]:
    """Read a JSONL instruction file. `key` names the config key in error messages; `rows` is a
    "start:end" slice of the file's non-blank lines (0-based); `reference_field` ("" = none)
    names the field that holds each prompt's reference answer."""
    path = Path(path)
    section = key.split(".")[0]
    prompts: list[Prompt] = []
    first_line: dict[str, int] = {}  # id -> the line that gave it
    for number, row in _rows(path, key, rows):
        where = f"{path}:{number}"
        _text_field(row, instruction_field, where, f" (or set {section}.instruction_field)")
        reference = ""
        if reference_field:
            hint = f" ({section}.reference_field)"
            reference = _text_field(row, reference_field, where, hint, numbers=True).strip()
        pid = str(row.get("id") or f"{source}-{number:04d}")
        if pid in first_line:
            # Candidates, pairs and paired evaluation are all keyed by prompt id.
            raise ConfigError(
                f"'{key}': {where} repeats the id {pid!r} of line {first_line[pid]}: "
                "give every instruction its own id"
            )
        first_line[pid] = number
        prompts.append(Prompt(pid, _instruction_of(row, instruction_field), source, reference))
    if not prompts:
        raise ConfigError(f"'{key}': {path} holds no instructions")
    return prompts


def check_split(seeds: list[Prompt], heldout: list[Prompt]) -> None:
    """Held-out prompts must never be trained on: refuse a seed pool that contains one."""
    held = {normalise(p.instruction) for p in heldout}
    leaked = [p.id for p in seeds if normalise(p.instruction) in held]
    if leaked:
        shown = ", ".join(leaked[:5])
        raise ConfigError(
            f"{len(leaked)} seed instructions also appear in the held-out set ({shown}): "
            "remove them from one of the two files"
        )
