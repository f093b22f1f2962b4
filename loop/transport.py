"""Adapter and model folders between the driver's run folder and actors on other nodes.

The run folder lives on the driver's machine only. The driver names every folder an actor needs
as a `Shipped` record: its place in the run folder, a content hash, and (when the cluster has
more than one node) its files in Ray's object store. An actor on the driver's node reads the run
folder directly; an actor elsewhere writes the files once into a local cache folder keyed by the
hash and loads from there. Every call carries its record, so a restarted actor, on whatever node,
serves the policy the call names.

A LoRA adapter is a few MB. A fully fine-tuned model (train.strategy "full") is the whole model,
~500 MB for the 135M default: it travels the same way, once per round and node, and the object
store (30% of a node's memory by default) must hold it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from loop.models import cache_dir

Files = dict[str, bytes]  # path relative to the folder (posix) -> contents


@dataclass(frozen=True)
class Shipped:
    """A folder an actor call needs: where it is on the driver's node, its hash, its files."""

    path: str  # absolute, on the driver's node
    digest: str  # sha256 over the relative names and contents
    home: str  # Ray node id of the driver
    files: Any = None  # ObjectRef of Files; None when the cluster was a single node


@dataclass(frozen=True)
class Outbox:
    """Where a trainer saves a round's folder: straight into the run folder on the driver's
    node, or into a scratch folder whose files go back to the driver."""

    path: str  # the run-folder path, absolute on the driver's node
    home: str  # Ray node id of the driver


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def pack(folder: str | Path) -> Files:
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def digest(files: Files) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "little"))
        h.update(files[name])
    return h.hexdigest()


def unpack(files: Files, dest: str | Path) -> Path:
    """Write `files` as folder `dest`, whole or not at all (a crash leaves no half folder)."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    for name, data in files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def _multi_node() -> bool:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive")) > 1


class Shipper:
    """The driver's side: one record per folder, its files put in the object store once."""

    def __init__(self) -> None:
        self._sent: dict[tuple[str, int], Shipped] = {}

    def ship(self, path: str | None) -> Shipped | None:
        if path is None:
            return None
        import ray

        # A round folder written again (a retried round) gets a new mtime, hence a new record.
        key = (path, max((p.stat().st_mtime_ns for p in Path(path).rglob("*")), default=0))
        if key not in self._sent:
            files = pack(path)
            ref = ray.put(files) if _multi_node() else None
            self._sent[key] = Shipped(str(Path(path).resolve()), digest(files), node_id(), ref)
        return self._sent[key]


def local(folder: str | Shipped | None) -> str | None:
    """The actor's side: a local folder for `folder`. Plain paths (tests, one machine) pass
    through; a record reads the run folder on the driver's node, the cache elsewhere."""
    if not isinstance(folder, Shipped):
        return folder
    if node_id() == folder.home and Path(folder.path).is_dir():
        return folder.path
    dest = cache_dir() / "shipped" / folder.digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if not dest.is_dir():
            if folder.files is None:
                raise RuntimeError(
                    f"{folder.path} is on the driver's node only and was not shipped, since the "
                    "cluster had one node when the round started; restart the run with every "
                    "node already joined"
                )
            import ray

            unpack(ray.get(folder.files), dest)
    return str(dest)


def outbox_path(box: str | Outbox) -> str:
    """Where the trainer saves: the run folder itself on the driver's node, else a scratch
    folder in this node's cache whose files `send_back` returns."""
    if not isinstance(box, Outbox):
        return box
    if node_id() == box.home:
        return box.path
    return str(cache_dir() / "outbox" / uuid.uuid4().hex / Path(box.path).name)


def send_back(box: str | Outbox, saved: str | None) -> Files | None:
    """The saved folder's files when it is not already in the driver's run folder."""
    if saved is None or saved == (box.path if isinstance(box, Outbox) else box):
        return None
    files = pack(saved)
    shutil.rmtree(Path(saved).parent, ignore_errors=True)
    return files
