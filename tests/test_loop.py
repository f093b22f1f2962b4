"""The loop end to end through Ray: a tiny random model for the control paths, and the real
default model (marked slow) for two rounds that must produce every artefact a user reads."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.pool import load_prompts, normalise
from loop.cli import main

REPO = Path(__file__).resolve().parents[1]


def inspect_json(run: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["inspect", str(run), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@contextlib.contextmanager
def ctrl_c_once(ready: Path, timeout: float = 120.0) -> Iterator[None]:
    """Send this process one SIGINT, as a terminal's Ctrl-C, as soon as `ready` exists (the run
    lock: taken once the stop handlers are in place); never after the block ends."""
    done = threading.Event()

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            if ready.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    sender = threading.Thread(target=wait, daemon=True)
    sender.start()
    try:
        yield
    finally:
        done.set()
        sender.join()


def test_ctrl_c_stops_a_run_with_exit_130_and_says_how_to_resume(
    tmp_path: Path, tiny_sections: dict, write_config, capsys
) -> None:
    config = write_config(tmp_path, **tiny_sections)
    run = tmp_path / "run"
    with ctrl_c_once(run / "run.lock"):
        code = main(["run", str(config), "--rounds", "1", "--run-dir", str(run), "--quiet"])

    assert code == 130
    assert f"stopped at a safe point; continue with `selfloop resume {run}`" in (
        capsys.readouterr().err
    )
    assert not (run / "run.lock").exists() and not (run / "round_001").exists()


def test_ctrl_c_stops_the_whole_showdown(
    tmp_path: Path, tiny_sections: dict, write_config, capsys
) -> None:
    config = write_config(tmp_path, **tiny_sections)
    argv = ["showdown", str(config), "--strategies", "lora,full", "--rounds", "1", "--quiet"]
    with ctrl_c_once(tmp_path / "runs" / "default-lora" / "run.lock"):
        code = main([*argv, "--runs-dir", str(tmp_path / "runs")])

    assert code == 130
    assert "showdown stopped during lora; strategies not run: full" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["default-lora"]


def test_state_json_drops_the_rounds_a_branch_set_aside(
    tmp_path: Path, tiny_sections: dict, write_config, capsys
) -> None:
    """Two finished, accepted rounds (round 2 the better), then `resume --from-round 2`
    stopped before round 2 is redone: state.json and the adapter chat and export pick by
    default must be round 1's, the only finished round left."""
    from loop.config import dump_config, load_config
    from loop.driver import _state
    from loop.serve import run_adapter
    from loop.store import RunStore

    cfg = load_config(write_config(tmp_path, **tiny_sections))
    store = RunStore(tmp_path / "run")
    store.create(dump_config(cfg))
    for k, persona in ((1, 0.2), (2, 0.4)):
        (store.round_dir(k) / "adapter").mkdir(parents=True)
        (store.round_dir(k) / "adapter" / "adapter_config.json").write_text("{}")
        metrics = {"eval": {"adapter": {"persona": {"mean": persona}}}}
        store.commit_round(k, metrics, {"round": k, "status": "accepted"})
    store.write_state(_state(store, cfg, 2))  # as the run that finished round 2 left it
    assert run_adapter(store.root).round == 2

    with ctrl_c_once(store.root / "run.lock"):
        code = main(["resume", str(store.root), "--from-round", "2", "--rounds", "2", "--quiet"])

    assert code == 130
    state = json.loads((store.root / "state.json").read_text())
    assert {k: v for k, v in state.items() if k != "updated"} == {
        "target_rounds": 2,
        "completed": [1],
        "accepted": [1],
        "policy_adapter": "round_001/adapter",
    }
    assert run_adapter(store.root).round == 1
    assert [p.name for p in (store.root / "aside").glob("*/*")] == ["round_002"]


def test_round_that_rejects_everything_keeps_the_previous_adapter(
    tmp_path: Path, tiny_model_dir: Path, write_config, capsys
) -> None:
    config = write_config(
        tmp_path,
        model={"policy": str(tiny_model_dir), "dtype": "float32"},
        critics={"rules": {"min_words": 10_000}},
    )
    run = tmp_path / "run"
    assert main(["run", str(config), "--rounds", "1", "--run-dir", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "round 1 | skipped | 0/" in out
    assert "no survivors to train on; the previous adapter stays" in out

    # Resuming adds a round; it too starts from the base model, since nothing was accepted.
    assert main(["resume", str(run), "--rounds", "2", "--quiet"]) == 0
    rounds = inspect_json(run, capsys)["rounds"]
    assert [r["status"] for r in rounds] == ["skipped", "skipped"]
    assert all(r["adapter"] is None and r["started_from"] is None for r in rounds)
    assert rounds[0]["rejected_by"]["rules"] == rounds[0]["candidates"] > 0
    assert rounds[0]["survivors"] == 0
    state = json.loads((run / "state.json").read_text())
    assert state["completed"] == [1, 2] and state["policy_adapter"] is None

    from datasets import load_from_disk

    assert load_from_disk(str(run / "round_001" / "survivors")).num_rows == 0


def test_a_tiny_sft_then_dpo_round_records_every_figure(
    tmp_path: Path, tiny_sections: dict, write_config, capsys
) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text(
        "".join(
            json.dumps({"instruction": f"Name a colour ({i}).", "response": "Blue, matey."}) + "\n"
            for i in range(20)
        )
    )
    config = write_config(
        tmp_path,
        **tiny_sections,
        train={"method": "sft+dpo", "pair_margin": 0.0, "real_file": str(real), "real_share": 0.5},
    )
    run = tmp_path / "run"
    assert main(["run", str(config), "--rounds", "1", "--run-dir", str(run), "--quiet"]) == 0
    (m,) = inspect_json(run, capsys)["rounds"]

    from datasets import load_from_disk

    pairs = load_from_disk(str(run / "round_001" / "pairs"))
    assert m["train"]["method"] == "sft+dpo"
    assert m["train"]["pairs"] == pairs.num_rows > 0
    assert set(pairs.column_names) >= {"prompt", "chosen", "rejected", "margin"}
    assert m["models"]["reference"] == "base" and m["models"]["generated_by"] == "base"
    # every arm, with intervals; gains paired against the other two arms
    for arm in ("base", "prompt", "adapter"):
        for figure in ("persona", "quality", "perplexity", "mc_accuracy", "crows"):
            assert {"mean", "lo", "hi", "n"} <= set(m["eval"][arm][figure])
        assert m["eval"][arm]["prompt_tokens"]["mean"] > 0
    assert m["eval"]["prompt"]["prompt_tokens"]["mean"] > m["eval"]["base"]["prompt_tokens"]["mean"]
    assert set(m["eval"]["gain"]) == set(m["eval"]["pairwise"]) == {"vs_base", "vs_prompt"}
    assert {"perplexity_ratio", "mc_accuracy", "crows"} <= set(m["eval"]["change"])
    assert "items" not in m["eval"]["adapter"]
    # critique figures
    assert m["diversity"]["candidates/size"] == m["candidates"]
    assert set(m["length_bias"]) == {"quality", "persona"}
    assert list(m["funnel"])[-4:] == ["bias", "balance", "budget", "survivors"]
    # what changed inside the model
    assert m["changes"]["update_norm"]["sum"] > 0
    assert "kl" in m["changes"] and m["changes"]["changed"]
    assert main(["show", str(run), "--round", "1", "--changes"]) == 0
    assert "update norm" in capsys.readouterr().out
    # real examples make half of the SFT set, and show marks them
    mix = m["train"]["mix"]
    assert mix["real"] == mix["synthetic"] == m["survivors"]
    assert main(["show", str(run), "--round", "1", "--train", "--limit", "100"]) == 0
    out = capsys.readouterr().out
    assert f"{mix['synthetic']} synthetic + {mix['real']} real examples" in out
    assert out.count("] real") == mix["real"]


@pytest.mark.slow
def test_two_real_rounds_then_branch(tmp_path: Path, write_config, capsys) -> None:
    config = write_config(
        tmp_path, critics={"quality": {"threshold": 0.0}, "persona": {"threshold": 0.0}}
    )
    run = tmp_path / "run"
    assert main(["run", str(config), "--rounds", "2", "--run-dir", str(run), "--quiet"]) == 0
    data = inspect_json(run, capsys)
    assert [r["round"] for r in data["rounds"]] == [1, 2]

    from datasets import load_from_disk
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from loop.models import SMOLLM2, resolve_model

    first = data["rounds"][0]
    assert first["candidates"] == len(load_from_disk(str(run / "round_001" / "candidates")))
    assert {"base", "prompt", "adapter", "gain", "pairwise", "change"} <= set(first["eval"])
    assert 0.0 <= first["eval"]["adapter"]["persona"]["mean"] <= 1.0
    survivors = load_from_disk(str(run / "round_001" / "survivors"))
    assert survivors.num_rows == first["survivors"] > 0
    assert survivors[0]["prompt"][0]["role"] == "user"
    assert survivors[0]["completion"][0]["role"] == "assistant"

    # Held-out prompts never reach training.
    heldout = {
        normalise(p.instruction)
        for p in load_prompts(REPO / "generators/data/heldout.jsonl", "heldout", "eval")
    }
    for k in (1, 2):
        trained = load_from_disk(str(run / f"round_00{k}" / "survivors"))["instruction"]
        assert not heldout & {normalise(t) for t in trained}

    base = AutoModelForCausalLM.from_pretrained(resolve_model(SMOLLM2))
    PeftModel.from_pretrained(base, str(run / "round_001" / "adapter"))

    # Branching from round 2 keeps the old round aside and recreates the same candidates.
    before = load_from_disk(str(run / "round_002" / "generated")).to_list()
    assert main(["resume", str(run), "--from-round", "2", "--quiet"]) == 0
    aside = list((run / "aside").glob("*/round_002"))
    assert len(aside) == 1 and (aside[0] / "round.json").is_file()
    after = load_from_disk(str(run / "round_002" / "generated")).to_list()
    assert [c["response"] for c in after] == [c["response"] for c in before]
