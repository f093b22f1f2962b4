"""The round's pure parts: seeds, the gate's accept / reject / skip paths, rollback to the last
accepted adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop import gate
from loop.config import GateConfig, load_config
from loop.round import RoundRunner, derive_seed, with_unparseable
from loop.stop import Stopper
from loop.store import RunStore, write_json

REPO = Path(__file__).resolve().parents[1]


def test_seeds_derive_from_their_parts_only() -> None:
    assert derive_seed(0, 1, "generate", 3) == derive_seed(0, 1, "generate", 3)
    assert len({derive_seed(0, k, "generate", i) for k in range(3) for i in range(3)}) == 9
    assert 0 <= derive_seed(7, 2, "train") < 2**31


def est(mean: float) -> dict:
    return {"mean": mean, "lo": mean, "hi": mean, "n": 4}


@pytest.fixture
def runner(tmp_path: Path) -> RoundRunner:
    cfg = load_config(REPO / "config.toml")
    store = RunStore(tmp_path / "run")
    store.create("")
    # The base model answers 1 of 4 held-out prompts in persona.
    store.save_rows(store.root / "arms" / "base", [{"id": "a"}])
    write_json(store.root / "arms" / "base.json", {"persona": est(0.25)})
    return RoundRunner(cfg, store, None, [], [], Stopper(), progress=False)


def commit(runner: RoundRunner, k: int, status: str, persona: float) -> None:
    runner.store.commit_round(
        k, {"eval": {"adapter": {"persona": est(persona)}}}, {"round": k, "status": status}
    )


def figures(persona: float, **adapter: float) -> dict:
    base = {"persona": est(0.25), "mc_accuracy": est(0.6), "perplexity": est(20.0)}
    base["crows"] = est(55.0)
    return {
        "base": base,
        "adapter": {"persona": est(persona)} | {k: est(v) for k, v in adapter.items()},
    }


TRAINED = {"trained": True, "diverged": False}


def test_gate_accepts_a_round_at_least_as_good_as_the_best(runner: RoundRunner) -> None:
    best = runner.best_target(before=1)
    assert best == 0.25
    assert gate.decide(GateConfig(), "persona", TRAINED, figures(0.25), best)[0] == "accepted"
    assert gate.decide(GateConfig(), "persona", TRAINED, figures(0.5), best)[0] == "accepted"


def test_gate_margin_asks_for_a_gain(runner: RoundRunner) -> None:
    status, reason = gate.decide(GateConfig(margin=0.1), "persona", TRAINED, figures(0.3), 0.25)
    assert status == "rejected"
    assert reason == "persona 0.300 is below the best so far 0.250 plus gate.margin 0.1"


def test_gate_rejects_a_regression_against_the_best_accepted_round(runner: RoundRunner) -> None:
    commit(runner, 1, "accepted", 0.75)
    assert runner.best_target(before=2) == 0.75
    status, reason = gate.decide(GateConfig(), "persona", TRAINED, figures(0.5), 0.75)
    assert status == "rejected"
    assert reason == "persona 0.500 is below the best so far 0.750 plus gate.margin 0.0"


def test_gate_rejects_a_diverged_round_and_skips_an_empty_one() -> None:
    diverged = {"trained": True, "diverged": True}
    assert gate.decide(GateConfig(), "persona", diverged, figures(0.9), 0.0)[0] == "rejected"
    empty = {"trained": False, "reason": "no survivors to train on"}
    status, reason = gate.decide(GateConfig(), "persona", empty, {}, 0.0)
    assert (status, reason) == ("skipped", "no survivors to train on; the previous adapter stays")


def test_gate_rejects_lost_retention_and_added_bias() -> None:
    cfg = GateConfig()
    assert gate.decide(cfg, "persona", TRAINED, figures(0.9, mc_accuracy=0.55), 0.0)[0] == (
        "accepted"
    )
    status, reason = gate.decide(cfg, "persona", TRAINED, figures(0.9, mc_accuracy=0.4), 0.0)
    assert status == "rejected"
    assert reason == "multiple-choice accuracy fell 0.600 -> 0.400 (gate.max_mc_drop 0.1)"
    status, reason = gate.decide(cfg, "persona", TRAINED, figures(0.9, perplexity=26.0), 0.0)
    assert reason == "general-text perplexity rose 20.00 -> 26.00 (gate.max_perplexity_rise 25%)"
    status, reason = gate.decide(cfg, "persona", TRAINED, figures(0.9, crows=61.0), 0.0)
    assert reason == "CrowS-Pairs score rose 55.0 -> 61.0 (gate.max_bias_rise 5.0 points)"


def test_next_round_starts_from_the_last_accepted_adapter(runner: RoundRunner) -> None:
    assert runner.accepted_adapter(before=1) is None
    commit(runner, 1, "accepted", 0.5)
    commit(runner, 2, "rejected", 0.1)
    commit(runner, 3, "skipped", 0.0)
    assert runner.accepted_adapter(before=4) == str(runner.store.round_dir(1) / "adapter")
    assert runner.best_target(before=4) == 0.5
    # a later accepted round that scores lower (a negative gate.margin) does not displace it
    commit(runner, 4, "accepted", 0.4)
    assert runner.accepted_adapter(before=5) == str(runner.store.round_dir(1) / "adapter")
    commit(runner, 5, "accepted", 0.5)
    assert runner.accepted_adapter(before=6) == str(runner.store.round_dir(5) / "adapter")


def test_funnel_starts_with_what_the_model_wrote() -> None:
    steps = {"generated": 10, "rules": 3, "budget": 1, "survivors": 6}
    assert list(with_unparseable(steps, {"unparseable": 2, "matches a held-out prompt": 1})) == [
        "generated",
        "unparseable",
        "rules",
        "budget",
        "survivors",
    ]
    assert with_unparseable(steps, {"unparseable": 2})["generated"] == 12


def test_gate_rejects_an_adapter_whose_answers_loop() -> None:
    status, reason = gate.decide(
        GateConfig(), "persona", TRAINED, figures(0.9, degenerate=0.75), 0.0
    )
    assert status == "rejected"
    assert reason == "75% of held-out answers loop (gate.max_loops 50%)"
