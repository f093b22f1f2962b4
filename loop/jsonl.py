"""Reading the JSONL data files a run is given or ships with: one JSON object per line, and
errors that name the file and the line so that the user can fix it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loop.errors import ConfigError


def read_objects(path: str | Path, key: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line. `key`, the config key that named the file,
    prefixes errors about the file as a whole."""
    path = Path(path)
    where = f"'{key}': {path}" if key else str(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist: give the path of a JSONL file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{where} is not UTF-8 text (byte {err.start}); save it as UTF-8"
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            kind = "an array" if isinstance(row, list) else type(row).__name__
            raise ConfigError(f"{path}:{number}: one JSON object per line is needed, not {kind}")
        yield number, row
