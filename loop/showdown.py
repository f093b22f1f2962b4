"""The showdown: one loop per training strategy on the same config, seeds and held-out prompts,
then one table of what each bought and what it cost.

Each trained strategy is an ordinary run in <runs_dir>/<run.name>-<strategy> with the override
train.strategy = <strategy>, so `selfloop inspect` reads it. Its row is the best accepted round
(the adapter the next round would build on) or, when nothing was accepted, the last round.

"prompt" trains nothing: its figures are the evaluation's prompt arm (the base model told the
system prompt), which every run measures in round 1 on the same held-out prompts. So when a
trained strategy runs too, the prompt row reads that run's prompt arm; alone, it is one round of
an ordinary run in <name>-prompt whose prompt arm is read (its adapter is ignored). The judge
compares only the adapter with the base, so the prompt row has no win rate.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop.errors import ConfigError
from loop.store import RunStore

STRATEGIES = ("prompt", "lora", "full", "qlora")
TRAINED = ("lora", "full", "qlora")


@dataclass(frozen=True)
class Entry:
    """One strategy of a showdown and the run folder its figures come from."""

    strategy: str
    run_dir: Path
    rounds: int  # rounds this entry runs; 0: it reads another entry's run


def parse_strategies(text: str) -> list[str]:
    """'prompt,lora' -> ['prompt', 'lora']; unknown, repeated or no names are errors."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"--strategies is empty; choose from {', '.join(STRATEGIES)}")
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ConfigError(
            f"--strategies: unknown {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}"
        )
    repeated = sorted({s for s in names if names.count(s) > 1})
    if repeated:
        raise ConfigError(f"--strategies names {', '.join(repeated)} twice; name each once")
    return names


def check_runnable(strategies: Sequence[str]) -> None:
    """qlora loads the base in 4 bits through bitsandbytes, which needs a CUDA GPU."""
    if "qlora" not in strategies:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("strategy qlora needs a CUDA GPU and this machine has none; use lora")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("strategy qlora needs bitsandbytes: pip install bitsandbytes")


def plan(strategies: Sequence[str], runs_dir: Path, name: str, rounds: int) -> list[Entry]:
    """The run folder and round count of each strategy; prompt borrows a trained run if any."""
    trained = [s for s in strategies if s != "prompt"]
    entries = []
    for s in strategies:
        if s == "prompt" and trained:
            entries.append(Entry(s, runs_dir / f"{name}-{trained[0]}", 0))
        else:
            entries.append(Entry(s, runs_dir / f"{name}-{s}", 1 if s == "prompt" else rounds))
    return entries


def overrides(entry: Entry) -> dict[str, Any]:
    """Config overrides of the entry's run."""
    out: dict[str, Any] = {"run.rounds": entry.rounds}
    if entry.strategy != "prompt":
        out["train.strategy"] = entry.strategy
    return out


# ---- reading the runs ----------------------------------------------------------------------


def chosen_round(store: RunStore, target: str) -> tuple[int, str]:
    """The best accepted round, else the last completed one, and which it is."""
    best = store.best_accepted(target)
    if best is not None:
        return best, "accepted"
    done = store.completed_rounds()
    if not done:
        raise ConfigError(f"{store.root} has no completed round to report")
    return done[-1], "last, none accepted"


def _folder_mb(folder: Path) -> float | None:
    if not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def row(entry: Entry, target: str) -> dict[str, Any]:
    """The strategy's figures: the target, judge win vs base, retention, bias and cost."""
    store = RunStore(entry.run_dir).require()
    if not store.completed_rounds():
        raise ConfigError(f"{store.root} has no completed round to report")
    if entry.strategy == "prompt":
        k, note = store.completed_rounds()[0], "prompt arm, round 1"
        arm, m = "prompt", store.metrics(k)
        train: dict[str, Any] = {"trainable_params": 0, "peak_memory_mb": None}
        train |= {"seconds": 0.0, "saved_mb": 0.0}
        win = None
    else:
        k, note = chosen_round(store, target)
        arm, m = "adapter", store.metrics(k)
        t = m.get("train") or {}
        # Training seconds are the whole run's: the cost of reaching this round's adapter.
        spent = [
            store.metrics(j).get("train", {}).get("fit_seconds") for j in store.completed_rounds()
        ]
        stage = sum(store.metrics(j)["seconds"].get("train", 0.0) for j in store.completed_rounds())
        train = {
            "trainable_params": t.get("trainable_params"),
            "peak_memory_mb": t["peak_rss_bytes"] / 2**20 if t.get("peak_rss_bytes") else None,
            "seconds": sum(spent) if all(s is not None for s in spent) else stage,
            "saved_mb": t["saved_bytes"] / 2**20
            if t.get("saved_bytes")
            else _folder_mb(store.round_dir(k) / "adapter"),
        }
        win = m.get("eval", {}).get("pairwise", {}).get("vs_base", {}).get("win")
    figures = m.get("eval", {}).get(arm, {})
    return {
        "strategy": entry.strategy,
        "run": str(entry.run_dir),
        "round": k,
        "round_note": note,
        "target": figures.get(target),
        "win_vs_base": win,
        "perplexity": figures.get("perplexity"),
        "mc_accuracy": figures.get("mc_accuracy"),
        "crows": figures.get("crows"),
        "train": train,
        "prompt_tokens": figures.get("prompt_tokens"),
        "seconds_per_request": figures.get("seconds_per_request"),
    }


def rows(entries: Sequence[Entry], target: str) -> list[dict[str, Any]]:
    return [row(e, target) for e in entries]
