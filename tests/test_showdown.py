"""The showdown: strategy parsing, the run plan, the table from hand-written run folders, and one
real prompt-only showdown on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.cli import _showdown_table, main
from loop.config import dump_config, load_config
from loop.errors import ConfigError
from loop.showdown import Entry, overrides, parse_strategies, plan, rows
from loop.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def test_strategies_parse_in_order() -> None:
    assert parse_strategies(" prompt, lora ,full") == ["prompt", "lora", "full"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--strategies is empty"),
        (" , ", "--strategies is empty"),
        ("lora,dora", "unknown dora"),
        ("lora,lora", "names lora twice"),
    ],
)
def test_bad_strategies_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_strategies(text)


def test_bad_strategies_stop_the_cli_before_any_run(tmp_path: Path, capsys) -> None:
    argv = ["showdown", str(REPO / "config.toml"), "--strategies", "lora,x", "--rounds", "1"]
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    assert "unknown x" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_qlora_without_a_gpu_is_refused(tmp_path: Path, capsys) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = ["showdown", str(REPO / "config.toml"), "--strategies", "qlora", "--rounds", "1"]
    assert main([*argv, "--runs-dir", str(tmp_path)]) == 2
    assert "qlora needs a CUDA GPU" in capsys.readouterr().err


def test_prompt_borrows_the_first_trained_run() -> None:
    entries = plan(["prompt", "full", "lora"], Path("runs"), "demo", 3)
    assert entries == [
        Entry("prompt", Path("runs/demo-full"), 0),
        Entry("full", Path("runs/demo-full"), 3),
        Entry("lora", Path("runs/demo-lora"), 3),
    ]
    alone = plan(["prompt"], Path("runs"), "demo", 3)
    assert alone == [Entry("prompt", Path("runs/demo-prompt"), 1)]
    assert overrides(entries[1]) == {"run.rounds": 3, "train.strategy": "full"}
    assert overrides(Entry("prompt", Path("x"), 1)) == {"run.rounds": 1}


def _est(mean: float) -> dict:
    return {"mean": mean, "lo": mean - 0.1, "hi": mean + 0.1, "n": 4}


def _metrics(k: int, persona: float, train: dict) -> dict:
    arm = {"perplexity": _est(20.0 + k), "mc_accuracy": _est(0.5), "crows": _est(55.0)}
    return {
        "round": k,
        "eval": {
            "base": arm | {"persona": _est(0.1)},
            "prompt": arm | {"persona": _est(0.6), "prompt_tokens": _est(80.0)},
            "adapter": arm | {"persona": _est(persona), "prompt_tokens": _est(30.0)},
            "pairwise": {"vs_base": {"win": _est(0.7)}},
        },
        "train": train,
        "seconds": {"train": 10.0 * k},
    }


def _run(root: Path, statuses: list[str], train: dict) -> Path:
    store = RunStore(root)
    store.create(dump_config(load_config(REPO / "config.toml")))
    for k, status in enumerate(statuses, 1):
        store.commit_round(k, _metrics(k, 0.2 * k, train), {"round": k, "status": status})
    return root


def test_rows_use_the_best_accepted_round_and_say_so(tmp_path: Path) -> None:
    # the cost fields as the trainer records them
    cost = {
        "trainable_params": 1000,
        "peak_rss_bytes": 512 * 2**20,
        "fit_seconds": 7.0,
        "saved_bytes": 2 * 2**20,
    }
    lora = _run(tmp_path / "demo-lora", ["accepted", "accepted", "rejected"], cost)
    full = _run(tmp_path / "demo-full", ["rejected", "rejected"], {})
    entries = [Entry("prompt", lora, 0), Entry("lora", lora, 3), Entry("full", full, 2)]
    got = rows(entries, "persona")

    assert [(r["round"], r["round_note"]) for r in got] == [
        (1, "prompt arm, round 1"),
        (2, "accepted"),
        (2, "last, none accepted"),
    ]
    prompt, lora_row, full_row = got
    assert prompt["target"]["mean"] == 0.6 and prompt["win_vs_base"] is None
    assert prompt["prompt_tokens"]["mean"] == 80.0 and prompt["train"]["trainable_params"] == 0
    assert lora_row["target"]["mean"] == pytest.approx(0.4)
    assert lora_row["perplexity"]["mean"] == 22.0
    assert lora_row["train"]["seconds"] == 21.0  # 7 s in each of the three rounds
    assert lora_row["train"]["trainable_params"] == 1000
    # Without the cost fields: the train stage's seconds, and '-' for the rest.
    assert full_row["train"]["seconds"] == 30.0 and full_row["train"]["peak_memory_mb"] is None

    table = _showdown_table(got, "persona").splitlines()
    assert table[0].split(" | ")[0].strip() == "strategy"
    assert "0.600 [0.500, 0.700]" in table[2] and "80.0 [79.9, 80.1]" in table[2]
    assert "1,000" in table[3] and "512" in table[3]
    assert table[4].split(" | ")[8].strip() == "-"  # full: no peak memory recorded


def test_a_prompt_only_showdown_reports_the_prompt_arm(
    tmp_path: Path, tiny_model_dir: Path, write_config, capsys
) -> None:
    config = write_config(tmp_path, model={"policy": str(tiny_model_dir), "dtype": "float32"})
    runs = tmp_path / "runs"
    argv = ["showdown", str(config), "--strategies", "prompt", "--rounds", "3", "--quiet"]
    assert main([*argv, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    name = load_config(config).run.name
    store = RunStore(runs / f"{name}-prompt")
    assert store.completed_rounds() == [1]  # prompt runs one round whatever --rounds says
    persona = store.metrics(1)["eval"]["prompt"]["persona"]
    line = next(x for x in out.splitlines() if x.startswith("prompt "))
    assert "1 (prompt arm, round 1)" in line
    assert f"{persona['mean']:.3f} [{persona['lo']:.3f}, {persona['hi']:.3f}]" in line
    # The folder is an ordinary run: inspect reads it.
    assert main(["inspect", str(store.root)]) == 0
