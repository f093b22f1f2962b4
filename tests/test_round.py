"""The round's pure parts: seeds, the gate's accept / reject / skip paths, rollback to the last
accepted adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.config import load_config
from loop.round import RoundRunner, derive_seed
from loop.stop import Stopper
from loop.store import RunStore, write_json

REPO = Path(__file__).resolve().parents[1]


def test_seeds_derive_from_their_parts_only() -> None:
    assert derive_seed(0, 1, "generate", 3) == derive_seed(0, 1, "generate", 3)
    assert len({derive_seed(0, k, "generate", i) for k in range(3) for i in range(3)}) == 9
    assert 0 <= derive_seed(7, 2, "train") < 2**31


def eval_row(adherent: bool) -> dict:
    return {
        "adherent": adherent,
        "markers": int(adherent),
        "degenerate": False,
        "quality": 0.5,
        "tokens": 10,
    }


@pytest.fixture
def runner(tmp_path: Path) -> RoundRunner:
    cfg = load_config(REPO / "config.toml")
    store = RunStore(tmp_path / "run")
    store.create("")
    # The base model answers 1 of 4 held-out prompts in persona.
    store.save_rows(store.root / "base_eval", [eval_row(i == 0) for i in range(4)])
    write_json(store.root / "base_eval.json", {})
    return RoundRunner(cfg, store, None, [], [], Stopper(), progress=False)


def commit(runner: RoundRunner, k: int, status: str, persona: float) -> None:
    runner.store.commit_round(
        k, {"eval": {"adapter": {"persona": persona}}}, {"round": k, "status": status}
    )


def records(persona: float | None = None, trained: bool = True, diverged: bool = False) -> dict:
    ev = {"eval": {"adapter": {"persona": persona}}} if persona is not None else {"eval": {}}
    return {"train": {"trained": trained, "diverged": diverged}, "evaluate": ev}


def test_gate_accepts_a_round_at_least_as_good_as_the_best(runner: RoundRunner) -> None:
    assert runner._gate(1, records(0.25))[0] == "accepted"  # equal to the base's 0.25
    assert runner._gate(1, records(0.5))[0] == "accepted"


def test_gate_rejects_a_regression_against_the_best_accepted_round(runner: RoundRunner) -> None:
    commit(runner, 1, "accepted", 0.75)
    status, reason = runner._gate(2, records(0.5))
    assert status == "rejected"
    assert reason == "persona 0.500 is below the best so far 0.750 (tolerance 0.0)"


def test_gate_rejects_a_diverged_round_and_skips_an_empty_one(runner: RoundRunner) -> None:
    assert runner._gate(1, records(0.9, diverged=True))[0] == "rejected"
    status, reason = runner._gate(1, records(trained=False))
    assert status == "skipped" and "previous adapter stays" in reason


def test_next_round_starts_from_the_last_accepted_adapter(runner: RoundRunner) -> None:
    assert runner.accepted_adapter(before=1) is None
    commit(runner, 1, "accepted", 0.5)
    commit(runner, 2, "rejected", 0.1)
    commit(runner, 3, "skipped", 0.0)
    assert runner.accepted_adapter(before=4) == str(runner.store.round_dir(1) / "adapter")
    assert runner.best_target(before=4) == 0.5


def test_gate_rejects_an_adapter_whose_answers_loop(runner: RoundRunner) -> None:
    recs = records(0.9)
    recs["evaluate"]["eval"]["adapter"]["degenerate"] = 0.75
    status, reason = runner._gate(1, recs)
    assert status == "rejected"
    assert reason == "75% of held-out answers loop (gate.max_loops 50%)"
