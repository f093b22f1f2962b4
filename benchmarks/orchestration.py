"""How much of a round's wall time is orchestration (Ray, I/O, the driver's bookkeeping) rather
than model work inside the actors.

    HF_HUB_OFFLINE=1 python benchmarks/orchestration.py                 # 1 round of config.toml
    HF_HUB_OFFLINE=1 python benchmarks/orchestration.py --rounds 2 --set eval.max_prompts=8
    HF_HUB_OFFLINE=1 python benchmarks/orchestration.py --run-dir runs/bench   # keep the run

The run is a real `selfloop run` of the config (default model, default sizes) in this process.
Each stage's window comes from its log line (end time and seconds); Ray's task timeline gives
when each actor method ran. Model work is the union of the actors' method executions within a
stage's window (several actors at once count once); orchestration is the rest of the window:
handing work and results between driver and actors, the driver's dataset writes and sums, and
waiting. "ray args/results" is the part of the actors' time Ray spent unpacking arguments and
storing results, counted in orchestration. Actor start-up (model loading) happens before the
first round and is printed apart.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
Interval = tuple[float, float]  # (start, end) in seconds since the epoch


class StageLines(logging.Handler):
    """Collects the round's stage log lines as (round, stage, start, end)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.stages: list[tuple[int, str, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "stage") and hasattr(record, "seconds"):
            end = record.created
            self.stages.append((record.round, record.stage, end - record.seconds, end))


def union(intervals: list[Interval], window: Interval) -> float:
    """Seconds of `window` covered by at least one interval."""
    lo, hi = window
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    covered, reach = 0.0, lo
    for a, b in clipped:
        if b > reach:
            covered += b - max(a, reach)
            reach = b
    return covered


def run_and_trace(
    config: str, rounds: int, overrides: list[str], run_dir: str | None
) -> tuple[list, list, float]:
    """Run `selfloop run` here, keeping its local Ray alive afterwards to read the timeline.
    The run folder is `run_dir` where given (to inspect or report afterwards), else temporary."""
    import ray

    from loop.cli import main

    handler = StageLines()
    shutdown = ray.shutdown
    ray.shutdown = lambda *a, **k: None  # the driver ends with it; the timeline needs the cluster
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", config, "--rounds", str(rounds), "--run-dir", run_dir or f"{tmp}/run"]
        for o in overrides:
            argv += ["--set", o]
        logging.getLogger("selfloop").addHandler(handler)
        code = main(argv)
        if code:
            sys.exit(f"selfloop run exited with {code}")
        time.sleep(3)  # actors flush their task events to Ray's store every second or so
        events = ray.timeline()
    shutdown()
    return handler.stages, events, started


def task_intervals(events: list[dict], kind: str) -> list[Interval]:
    return [
        (e["ts"] / 1e6, (e["ts"] + e.get("dur", 0)) / 1e6)
        for e in events
        if e.get("cat") == kind and e.get("ph") == "X"
    ]


def report(stages: list, events: list, started: float) -> None:
    work = task_intervals(events, "task:execute")
    ray_io = task_intervals(events, "task:deserialize_arguments")
    ray_io += task_intervals(events, "task:store_outputs")
    first = min(s[2] for s in stages)
    print(f"before the first round (Ray start, actors load their models): {first - started:.1f} s")
    totals = {"wall": 0.0, "work": 0.0, "ray": 0.0}
    for k, stage, lo, hi in stages:
        wall, busy, rio = hi - lo, union(work, (lo, hi)), union(ray_io, (lo, hi))
        totals = {"wall": totals["wall"] + wall, "work": totals["work"] + busy,
                  "ray": totals["ray"] + rio}  # fmt: skip
        print(
            f"round {k} | {stage:9s} | wall {wall:7.1f} s | model work {busy:7.1f} s | "
            f"orchestration {wall - busy:6.1f} s ({(wall - busy) / max(wall, 1e-9):5.1%}) | "
            f"ray args/results {rio:5.2f} s"
        )
    orch = totals["wall"] - totals["work"]
    print(
        f"all rounds | wall {totals['wall']:.1f} s | model work {totals['work']:.1f} s | "
        f"orchestration {orch:.1f} s = {orch / max(totals['wall'], 1e-9):.1%} "
        f"(target < 5%) | ray args/results {totals['ray']:.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.toml"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--run-dir", help="keep the run in this new folder (default: a temporary one)")
    args = ap.parse_args()
    print(f"config {args.config} | rounds {args.rounds} | load {os.getloadavg()[0]:.1f}")
    stages, events, started = run_and_trace(args.config, args.rounds, args.set, args.run_dir)
    report(stages, events, started)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
