"""Fault injection: kill the driver (SIGKILL) at every stage boundary and inside every stage,
kill actors mid-stage, stop with SIGINT, SIGTERM, a second Ctrl-C and `selfloop stop`, and check
after the final resume that every dataset equals that of an uninterrupted run.

Runs are real `selfloop` processes on a tiny random model, each in its own process group, so a
kill takes its Ray processes with it. Faults are chained on one run folder (each resume meets the
next fault), which keeps the module to a few minutes. It prints how many faults it injected, how
many the runs survived and how many records were lost (the target is zero).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loop.round import STAGES

pytestmark = pytest.mark.slow

ROUNDS = 2
DATASETS = ("prompts", "generated", "candidates", "survivors", "eval")
TALLY = {"injected": 0, "survived": 0, "lost": 0}


class Proc:
    """One `selfloop` process with its own log, in its own process group."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "loop.cli", *args, "--json"],  # stage lines, no bars
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        self.pid = self.popen.pid

    def text(self) -> str:
        return self.log.read_text()

    def signal(self, sig: int = signal.SIGKILL) -> None:
        """To the whole group, as a terminal's Ctrl-C (or a dying machine) would."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float = 600) -> int:
        rc = self.popen.wait(timeout=timeout)
        self.signal(signal.SIGKILL)  # Ray's helper processes outlive the driver otherwise
        return rc

    def until(self, check: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fault point not reached:\n{self.text()[-3000:]}")
            time.sleep(0.02)


class Chain:
    """A run folder that faults are injected into, one process after another."""

    def __init__(self, base: Path, config: Path, name: str) -> None:
        self.base, self.config, self.run = base, config, base / name
        self.n = 0

    def start(self) -> Proc:
        self.n += 1
        log = self.base / f"{self.run.name}-{self.n}.log"
        if self.n == 1:
            return Proc(
                ["run", str(self.config), "--rounds", str(ROUNDS), "--run-dir", str(self.run)], log
            )
        return Proc(["resume", str(self.run)], log)

    def record(self, stage: str, k: int = 1) -> Path:
        return self.run / f"round_{k:03d}" / "stages" / f"{stage}.json"

    def finish_and_compare(self, reference: dict, faults: int) -> None:
        proc = self.start()
        assert proc.wait() == 0, proc.text()[-3000:]
        lost = lost_records(reference, self.run)
        TALLY["survived"] += faults
        TALLY["lost"] += lost
        assert lost == 0, f"{lost} records differ from the uninterrupted run"


TIMED = ("seconds",)  # eval rows carry each request's wall-clock cost, which no rerun repeats


def rows(run: Path) -> dict[tuple[int, str], list[dict]]:
    from datasets import load_from_disk

    def untimed(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in TIMED}

    return {
        (k, name): [untimed(r) for r in load_from_disk(str(run / f"round_{k:03d}" / name))]
        for k in range(1, ROUNDS + 1)
        for name in DATASETS
        if (run / f"round_{k:03d}" / name).exists()
    }


def lost_records(reference: dict, run: Path) -> int:
    """Reference records that the run lacks or holds changed; every round must be committed."""
    for k in range(1, ROUNDS + 1):
        assert (run / f"round_{k:03d}" / "round.json").is_file()
    got = rows(run)
    return sum(1 for key, ref in reference.items() for r in ref if r not in got.get(key, []))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_sections: dict, write_config):
    base = tmp_path_factory.mktemp("faults")
    # Every round trains and is accepted, so every stage of both rounds runs; 16 candidates of
    # up to 48 tokens keep each stage long enough for a kill to land inside it.
    sections = {k: v for k, v in tiny_sections.items() if k != "generate"}
    generate = {"prompts_per_round": 8, "max_new_tokens": 48}
    config = write_config(base, **sections, generate=generate)
    reference = Chain(base, config, "reference")
    proc = reference.start()
    assert proc.wait() == 0, proc.text()[-3000:]
    yield base, config, rows(reference.run), reference
    print(
        f"\nfaults injected {TALLY['injected']}, survived {TALLY['survived']}, "
        f"records lost {TALLY['lost']}"
    )


def test_sigkill_at_every_stage_boundary(setup) -> None:
    base, config, reference, _ = setup
    chain = Chain(base, config, "boundaries")
    for stage in [*STAGES, "commit"]:
        proc = chain.start()
        marker = (
            chain.run / "round_001" / "round.json" if stage == "commit" else chain.record(stage)
        )
        proc.until(marker.is_file)
        proc.signal(signal.SIGKILL)
        proc.wait()
        TALLY["injected"] += 1
        assert (chain.run / "run.lock").is_file()  # a dead driver's lock: the resume takes it over
    chain.finish_and_compare(reference, faults=len(STAGES) + 1)


def test_sigkill_inside_every_stage(setup) -> None:
    """Each kill waits for the stage to begin, then for half the time it took uninterrupted."""
    base, config, reference, ref_chain = setup
    chain = Chain(base, config, "inside")
    inside = 0
    for i, stage in enumerate(STAGES):
        seconds = json.loads(ref_chain.record(stage).read_text())["seconds"]
        proc = chain.start()
        began = (
            (lambda p=proc, s=STAGES[i - 1]: f"round 1 | {s} |" in p.text())
            if i
            else ((chain.run / "run.lock").is_file)
        )
        proc.until(began)
        time.sleep(seconds / 2)
        proc.signal(signal.SIGKILL)
        proc.wait()
        TALLY["injected"] += 1
        inside += not chain.record(stage).is_file()
    print(f"\n{inside} of {len(STAGES)} kills landed inside their stage")
    chain.finish_and_compare(reference, faults=len(STAGES))


def worker_pid(proc: Proc, title: str) -> int | None:
    """A Ray worker of this driver's own cluster (a descendant of the driver) running `title`."""
    import psutil

    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            if " ".join(child.cmdline()).startswith(title):
                return child.pid
    except psutil.Error:  # a process ended while being read
        return None
    return None


def wait_for_worker(proc: Proc, title: str) -> int:
    found: list[int | None] = [None]

    def running() -> bool:
        found[0] = worker_pid(proc, title)
        return found[0] is not None

    proc.until(running)
    return found[0]


def test_actors_killed_mid_stage_are_restarted(setup) -> None:
    base, config, reference, _ = setup
    chain = Chain(base, config, "actors")
    proc = chain.start()
    # Meanwhile a second writer must be refused, naming the holder.
    proc.until((chain.run / "run.lock").is_file)
    second = subprocess.Popen(
        [sys.executable, "-m", "loop.cli", "resume", str(chain.run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for title in (
        "ray::GeneratorActor.respond",
        "ray::CriticActor.score",
        "ray::TrainerActor.train_to",
    ):
        os.kill(wait_for_worker(proc, title), signal.SIGKILL)
        TALLY["injected"] += 1
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and f"in use by process {proc.pid}" in err, err

    assert proc.wait() == 0, proc.text()[-3000:]
    lost = lost_records(reference, chain.run)
    TALLY["survived"] += 3
    TALLY["lost"] += lost
    assert lost == 0


def finished_here(log: str, k: int, stage: str) -> bool:
    """The process logged stage `stage` of round k as done by itself."""
    return any(
        line.startswith(f"round {k} | {stage} | ") and "done earlier" not in line
        for line in (message(row) for row in log.splitlines())
    )


def message(row: str) -> str:
    """A log line's message: the runs log JSON lines (--json); other lines stay as they are."""
    try:
        return json.loads(row)["message"]
    except (ValueError, KeyError, TypeError):
        return row


def interrupt(proc: Proc, chain: Chain, k: int, stage: str, how: str) -> None:
    """Stop `proc` once it has finished round k's `stage` itself (not reused it); a double
    Ctrl-C comes early instead, while Ray and the actors start, so that the second one
    arrives before the stage in flight ends."""
    from loop.cli import main

    if how == "twice":
        proc.until((chain.run / "run.lock").is_file)  # taken after the handlers are in place
        time.sleep(1.0)
        proc.signal(signal.SIGINT)
        time.sleep(0.5)
        proc.signal(signal.SIGINT)
        return
    proc.until(lambda: finished_here(proc.text(), k, stage))
    if how == "command":
        assert main(["stop", str(chain.run)]) == 0
    elif how == "SIGTERM":
        os.kill(proc.pid, signal.SIGTERM)  # as `kill PID` or a process manager sends it
    else:
        proc.signal(signal.SIGINT)


def test_stops_on_signals_and_on_request(setup) -> None:
    base, config, reference, _ = setup
    chain = Chain(base, config, "stops")
    for k, stage, how in [
        (1, "generate", "SIGINT"),
        (1, "train", "SIGTERM"),
        (0, "", "twice"),
        (2, "generate", "command"),
    ]:
        proc = chain.start()
        interrupt(proc, chain, k, stage, how)
        rc = proc.wait()
        TALLY["injected"] += 1
        if how == "twice":
            assert rc == 130 and "press Ctrl-C again" in proc.text(), proc.text()[-3000:]
        else:
            # 128 + the signal, as a shell reports it; `selfloop stop` asked for the stop
            expected = {"SIGINT": 130, "SIGTERM": 143, "command": 0}[how]
            assert rc == expected and "stopped at a safe point" in proc.text(), proc.text()[-3000:]
            assert not (chain.run / "run.lock").exists()
    chain.finish_and_compare(reference, faults=4)
