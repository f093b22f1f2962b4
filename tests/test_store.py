"""The run folder: atomic JSON, datasets on disk, round records, branching and the run lock."""

import os
import socket
import subprocess
from pathlib import Path

import pytest
from datasets import load_from_disk

from loop import store as store_module
from loop.errors import RunStoreError
from loop.store import RunStore, read_json, write_json


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "run")
    s.create("[run]\nname = 'x'\n")
    return s


def make_round(store: RunStore, k: int, complete: bool) -> None:
    folder = store.round_dir(k)
    folder.mkdir(parents=True)
    (folder / "note.txt").write_text(f"round {k}")
    if complete:
        store.commit_round(k, {"k": k}, {"round": k})


# ---- files ---------------------------------------------------------------------------------------


def test_write_json_then_read_json(tmp_path: Path) -> None:
    data = {"round": 2, "scores": [0.5, 1.0], "nested": {"ok": True, "none": None}, "név": "é"}

    write_json(tmp_path / "a.json", data)

    assert read_json(tmp_path / "a.json") == data
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left


def test_create_freezes_the_config(store: RunStore) -> None:
    assert store.exists()
    assert store.require() is store
    assert store.frozen_config() == "[run]\nname = 'x'\n"


def test_require_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match=r"no run at .*empty \(it has no selfloop-run\.json"):
        RunStore(tmp_path / "empty").require()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "config.toml").write_text("[run]\n")
    assert not RunStore(tmp_path / "project").exists()


# ---- datasets ------------------------------------------------------------------------------------


def test_save_rows_load_rows_round_trip(store: RunStore) -> None:
    rows = [
        {"id": "a", "prompt": [{"role": "user", "content": "Hi"}], "score": 0.5},
        {"id": "b", "prompt": [{"role": "user", "content": "Bye"}], "score": 1.0},
    ]
    folder = store.dataset(1, "survivors")

    store.save_rows(folder, rows)

    assert store.load_rows(folder) == rows
    table = load_from_disk(str(folder))
    assert table.column_names == ["id", "prompt", "score"]
    assert table.num_rows == 2


def test_empty_rows_keep_their_columns(store: RunStore) -> None:
    folder = store.dataset(1, "survivors")

    store.save_rows(folder, [], columns=("id", "prompt", "completion"))

    assert store.load_rows(folder) == []
    assert load_from_disk(str(folder)).column_names == ["id", "prompt", "completion"]


def test_a_stale_folder_is_replaced(store: RunStore) -> None:
    folder = store.dataset(1, "prompts")
    store.save_rows(folder, [{"id": "old", "extra": 1}, {"id": "old2", "extra": 2}])
    (folder / "leftover.txt").write_text("from a crash")
    stale_tmp = folder.with_name(f".{folder.name}.tmp")
    stale_tmp.mkdir()
    (stale_tmp / "junk").write_text("half written")

    store.save_rows(folder, [{"id": "new"}])

    assert store.load_rows(folder) == [{"id": "new"}]
    assert not (folder / "leftover.txt").exists()
    assert not stale_tmp.exists()


# ---- rounds --------------------------------------------------------------------------------------


def test_completed_rounds_need_a_round_record(store: RunStore) -> None:
    make_round(store, 1, complete=True)
    make_round(store, 2, complete=False)
    make_round(store, 3, complete=True)
    (store.root / "round_4").mkdir()  # not a round folder name
    (store.root / "round_abc").mkdir()

    assert store.rounds_on_disk() == [1, 2, 3]
    assert store.completed_rounds() == [1, 3]
    assert store.round_record(3) == {"round": 3}
    assert store.metrics(1) == {"k": 1}


def test_stage_records(store: RunStore) -> None:
    assert store.stage_record(1, "prompts") is None

    store.write_stage_record(1, "prompts", {"sampled": 24})

    assert store.stage_record(1, "prompts") == {"sampled": 24}


def test_move_aside_keeps_later_rounds(store: RunStore) -> None:
    for k in (1, 2, 3):
        make_round(store, k, complete=True)

    dest = store.move_aside(2)

    assert dest is not None
    assert dest.parent == store.root / "aside"
    assert store.rounds_on_disk() == [1]
    assert sorted(p.name for p in dest.iterdir()) == ["round_002", "round_003"]
    assert (dest / "round_003" / "note.txt").read_text() == "round 3"
    assert read_json(dest / "round_002" / "round.json") == {"round": 2}
    assert store.move_aside(2) is None  # nothing left to move


def test_two_branches_in_the_same_second_keep_both(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module.time, "strftime", lambda fmt, *a: "20250101-120000")
    make_round(store, 2, complete=True)
    first = store.move_aside(2)
    make_round(store, 2, complete=False)

    second = store.move_aside(2)

    assert first is not None and second is not None and first != second
    assert (first / "round_002" / "round.json").is_file()
    assert not (second / "round_002" / "round.json").exists()


# ---- the lock ------------------------------------------------------------------------------------


@pytest.fixture
def live_pid() -> int:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_lock_is_held_inside_and_released_after(store: RunStore) -> None:
    lock = store.root / "run.lock"

    with store.lock():
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}"

    assert not lock.exists()


def test_lock_refuses_while_a_live_process_holds_it(store: RunStore, live_pid: int) -> None:
    lock = store.root / "run.lock"
    lock.write_text(f"{live_pid} {socket.gethostname()}")

    with pytest.raises(RunStoreError, match=f"in use by process {live_pid} on "):
        with store.lock():
            pytest.fail("the lock was taken from a live process")

    assert lock.read_text() == f"{live_pid} {socket.gethostname()}"  # left to its owner


def test_lock_refuses_a_holder_on_another_machine(store: RunStore) -> None:
    (store.root / "run.lock").write_text(f"{dead_pid()} some-other-host")

    with pytest.raises(RunStoreError, match="on some-other-host"):
        with store.lock():
            pass


def test_lock_takes_over_from_a_dead_process(store: RunStore) -> None:
    lock = store.root / "run.lock"
    lock.write_text(f"{dead_pid()} {socket.gethostname()}")

    with store.lock():
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}"

    assert not lock.exists()


def test_lock_takes_over_an_empty_lock_file(store: RunStore) -> None:
    (store.root / "run.lock").write_text("")

    with store.lock():
        pass
