"""Instruction pools: the seed file a run starts from and the held-out prompts it is judged on.

Any JSONL file whose lines carry an `instruction` field works (the project's own seeds, or for
example the Self-Instruct seed tasks). Instances with an `input` are folded into the instruction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from loop.errors import ConfigError
from loop.jsonl import read_objects


@dataclass(frozen=True)
class Prompt:
    id: str
    instruction: str
    source: str  # "seed", "self-instruct" or "heldout"


def normalise(text: str) -> str:
    """Lower case, punctuation and extra space removed: equal instructions compare equal."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _instruction_of(row: dict) -> str:
    text = row["instruction"].strip()
    instances = row.get("instances")
    first = instances[0] if isinstance(instances, list) and instances else {}
    extra = first.get("input") if isinstance(first, dict) else None
    extra = extra.strip() if isinstance(extra, str) else ""
    return f"{text}\n\n{extra}" if extra else text


def load_prompts(path: str | Path, source: str, key: str) -> list[Prompt]:
    """Read a JSONL instruction file. `key` names the config key in error messages."""
    prompts: list[Prompt] = []
    for number, row in read_objects(path, key):
        instruction = row.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError(
                f"{path}:{number}: a line needs an 'instruction' field holding non-empty text"
            )
        pid = str(row.get("id") or f"{source}-{number:04d}")
        prompts.append(Prompt(pid, _instruction_of(row), source))
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
