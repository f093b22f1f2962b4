"""The run folder: the one source of truth about a run.

    runs/NAME/
      config.toml            the resolved config, frozen when the run was created
      state.json             summary for people and scripts (derived from the round records)
      actors.json            the Ray node of the driver and of every actor
      arms/base/ arms/prompt/  held-out answers of the base model without and with the
      arms/base.json ...       system prompt, and their figures: computed once per run
      round_001/
        prompts/ generated/ candidates/ survivors/ pairs/ eval/   datasets (`load_from_disk`)
        adapter/                                           PEFT adapter
        stages/<stage>.json   a stage's completion record, written after its data
        metrics.json          counts, scores, eval figures, stage times
        round.json            the round's completion record, written last

Every file and folder is written aside and renamed into place, so a reader never sees half of one,
and a stage or round counts as done only once its record exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from loop.errors import RunStoreError

MARKER = "selfloop-run.json"  # only a folder holding it is a run (and may be overwritten)
CONFIG = "config.toml"
STATE = "state.json"
LOCK = "run.lock"
STOP = "stop.request"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON object from a run folder; a damaged file is a RunStoreError that names it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunStoreError(f"{path} is missing or damaged ({err})") from None
    if not isinstance(data, dict):
        raise RunStoreError(f"{path} is damaged: it holds no JSON object")
    return data


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place, dropping a stale one left by a crash."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


class RunStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---- run level -----------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    def exists(self) -> bool:
        return (self.root / MARKER).is_file() and self.config_path.is_file()

    def require(self) -> RunStore:
        if not self.exists():
            raise RunStoreError(f"no run at {self.root} (it has no {MARKER} and {CONFIG})")
        return self

    @property
    def stop_request(self) -> Path:
        return self.root / STOP

    def holder(self) -> tuple[int | None, str]:
        """(pid, host) of the process writing this run, or (None, "") when none is."""
        path = self.root / LOCK
        pid, host = _holder(path) if path.is_file() else (None, "")
        return (pid, host) if pid is not None and _alive(pid, host) else (None, "")

    def create(self, config_text: str) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise RunStoreError(f"{self.root} is a file, not a folder; choose another --run-dir")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (NotADirectoryError, FileExistsError):
            raise RunStoreError(
                f"cannot make the run folder {self.root}: a parent is a file"
            ) from None
        write_atomic(self.config_path, config_text)
        write_json(self.root / MARKER, {"created": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def frozen_config(self) -> str:
        return self.config_path.read_text(encoding="utf-8")

    def write_state(self, state: dict[str, Any]) -> None:
        write_json(self.root / STATE, {**state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time. A lock left by a dead process is taken over."""
        path = self.root / LOCK
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid, host = _holder(path)
                if pid is not None and _alive(pid, host):
                    raise RunStoreError(
                        f"{self.root} is in use by process {pid} on {host}; "
                        "wait for it or stop it with Ctrl-C"
                    ) from None
                path.unlink(missing_ok=True)  # stale: its process is gone, or it never wrote
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()} {socket.gethostname()}")
            break
        else:
            raise RunStoreError(f"could not take the lock {path}: another process keeps taking it")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    # ---- rounds --------------------------------------------------------------------------

    def round_dir(self, k: int) -> Path:
        return self.root / f"round_{k:03d}"

    def rounds_on_disk(self) -> list[int]:
        found = []
        for p in self.root.glob("round_[0-9][0-9][0-9]"):
            found.append(int(p.name.split("_")[1]))
        return sorted(found)

    def completed_rounds(self) -> list[int]:
        return [k for k in self.rounds_on_disk() if (self.round_dir(k) / "round.json").is_file()]

    def round_record(self, k: int) -> dict[str, Any]:
        return read_json(self.round_dir(k) / "round.json")

    def metrics(self, k: int) -> dict[str, Any]:
        return read_json(self.round_dir(k) / "metrics.json")

    def commit_round(self, k: int, metrics: dict[str, Any], record: dict[str, Any]) -> None:
        self.round_dir(k).mkdir(parents=True, exist_ok=True)
        write_json(self.round_dir(k) / "metrics.json", metrics)
        write_json(self.round_dir(k) / "round.json", record)

    # ---- stages --------------------------------------------------------------------------

    def best_accepted(self, target: str, before: int | None = None) -> int | None:
        """The accepted round (before `before`) whose adapter scored best on `target`; the later
        one on a tie. The next round builds on it."""
        best: tuple[float, int] | None = None
        for k in self.completed_rounds():
            if (before is not None and k >= before) or self.round_record(k)["status"] != "accepted":
                continue
            value = self.metrics(k)["eval"]["adapter"][target]
            value = value["mean"] if isinstance(value, dict) else value
            if best is None or value >= best[0]:
                best = (value, k)
        return None if best is None else best[1]

    def stage_record(self, k: int, stage: str) -> dict[str, Any] | None:
        path = self.round_dir(k) / "stages" / f"{stage}.json"
        return read_json(path) if path.is_file() else None

    def write_stage_record(self, k: int, stage: str, record: dict[str, Any]) -> None:
        folder = self.round_dir(k) / "stages"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / f"{stage}.json", record)

    # ---- datasets ------------------------------------------------------------------------

    def save_rows(
        self, folder: Path, rows: Iterable[dict[str, Any]], columns: Iterable[str] = ("id",)
    ) -> None:
        """Save rows as a Hugging Face dataset; `columns` names the columns of an empty one."""
        from datasets import Dataset

        rows = list(rows)
        table = Dataset.from_list(rows) if rows else Dataset.from_dict({c: [] for c in columns})
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        # an empty table needs one explicit shard, or `load_from_disk` cannot read it back
        table.save_to_disk(str(tmp), num_shards=None if rows else 1)
        replace_dir(tmp, folder)

    def load_rows(self, folder: Path) -> list[dict[str, Any]]:
        from datasets import load_from_disk

        try:
            return load_from_disk(str(folder)).to_list()
        except Exception as err:  # pyarrow and datasets raise many kinds for a damaged folder
            raise RunStoreError(
                f"the dataset {folder} is missing or damaged ({type(err).__name__}); restart "
                "that round with `selfloop resume RUN --from-round K`"
            ) from None

    def dataset(self, k: int, name: str) -> Path:
        return self.round_dir(k) / name

    # ---- branching -----------------------------------------------------------------------

    def move_aside(self, from_round: int) -> Path | None:
        """Keep rounds >= from_round in `aside/<time>/` (never deleted) and return that folder."""
        later = [k for k in self.rounds_on_disk() if k >= from_round]
        if not later:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = self.root / "aside" / stamp
        n = 1
        while dest.exists():  # two branches in one second each get their own folder
            n += 1
            dest = self.root / "aside" / f"{stamp}-{n}"
        dest.mkdir(parents=True)
        for k in later:
            os.replace(self.round_dir(k), dest / self.round_dir(k).name)
        return dest


def _holder(path: Path) -> tuple[int | None, str]:
    """(pid, host) written in a lock file; pid None when the file is empty or garbled."""
    try:
        parts = path.read_text(encoding="utf-8").split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else socket.gethostname())
    except (OSError, ValueError, IndexError):
        return None, ""


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process: cannot check, so assume it is alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0
