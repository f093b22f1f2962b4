"""The CLI on a run folder written by hand: inspect, show, and every bad-input path (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loop.cli import main
from loop.config import dump_config, load_config
from loop.errors import UserError
from loop.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def anchored(text: str) -> str:
    """The repo config's relative data paths made absolute, so a copy works from any folder."""
    text = text.replace('"generators/data/', f'"{REPO}/generators/data/')
    return text.replace('"../shared/data/', f'"{REPO.parent}/shared/data/')


def _est(mean: float) -> dict:
    return {"mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n": 4}


def _metrics(k: int, status: str) -> dict:
    return {
        "round": k,
        "status": status,
        "reason": "test",
        "candidates": 4,
        "survivors": 1,
        "keep_rate": 0.25,
        "rejected_by": {"rules": 2, "quality": 1, "budget": 0},
        "funnel": {"generated": 4, "rules": 2, "quality": 1, "budget": 0, "survivors": 1},
        "scores": {"rules": 0.5, "quality": 0.4},
        "eval": {
            "base": {"persona": _est(0.1), "quality": _est(0.3), "crows": _est(55.0)},
            "prompt": {"persona": _est(0.5), "quality": _est(0.32), "crows": _est(54.0)},
            "adapter": {"persona": _est(0.2 * k), "quality": _est(0.35), "crows": _est(56.0)},
            "gain": {"vs_base": _est(0.2 * k - 0.1), "vs_prompt": _est(0.2 * k - 0.5)},
            "pairwise": {"vs_base": {"win": _est(0.6), "consistency": 0.5}},
        },
        "seconds": {"prompts": 1, "generate": 2, "critique": 3, "train": 4, "evaluate": 5},
    }


def _candidate(cid: str, survivor: bool, rejected_by: str) -> dict:
    return {
        "id": cid,
        "prompt_id": "p",
        "source": "seed",
        "instruction": "Say hi.",
        "response": f"Ahoy from {cid}!",
        "tokens": 5,
        "finished": True,
        "trimmed": False,
        "rules_score": 1.0,
        "rules_pass": rejected_by != "rules",
        "rules_reason": "r",
        "quality_score": 0.5,
        "quality_pass": rejected_by != "quality",
        "quality_reason": "q",
        "combined_score": 0.5,
        "survivor": survivor,
        "rejected_by": rejected_by,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    store = RunStore(tmp_path / "run")
    store.create(dump_config(load_config(REPO / "config.toml")))
    for k in (1, 2):
        store.save_rows(
            store.dataset(k, "candidates"),
            [
                _candidate(f"r{k}:a", True, ""),
                _candidate(f"r{k}:b", False, "rules"),
                _candidate(f"r{k}:c", False, "quality"),
            ],
        )
        store.commit_round(k, _metrics(k, "accepted" if k == 1 else "rejected"), {"round": k})
    (store.round_dir(3) / "stages").mkdir(parents=True)
    store.write_stage_record(3, "prompts", {"seconds": 1})
    return store.root


def test_inspect_table_lists_every_round(run_dir: Path, capsys) -> None:
    assert main(["inspect", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "rejected" in out
    assert "0.400 [0.350, 0.450]" in out  # round 2's adapter persona figure with its interval
    assert "0.300 [0.250, 0.350]" in out  # round 2's gain over the base
    assert "crows" in out and "56.0 [" in out  # the arms table
    assert "round 3 is incomplete (stages done: prompts)" in out


def test_inspect_json_has_the_documented_keys(run_dir: Path, capsys) -> None:
    assert main(["inspect", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == str(run_dir)
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    first = data["rounds"][0]
    for key in (
        "round",
        "status",
        "candidates",
        "survivors",
        "rejected_by",
        "scores",
        "eval",
        "seconds",
    ):
        assert key in first
    assert {"base", "prompt", "adapter", "gain", "pairwise"} <= set(first["eval"])
    assert {"generate", "critique", "train", "evaluate"} <= set(first["seconds"])


def test_inspect_one_round(run_dir: Path, capsys) -> None:
    assert main(["inspect", str(run_dir), "--round", "2", "--json"]) == 0
    assert [r["round"] for r in json.loads(capsys.readouterr().out)["rounds"]] == [2]


def test_show_survivors_and_rejected_by_critic(run_dir: Path, capsys) -> None:
    assert main(["show", str(run_dir), "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert "[r1:a] survivor" in out and "r1:b" not in out

    assert main(["show", str(run_dir), "--round", "1", "--rejected", "--critic", "quality"]) == 0
    out = capsys.readouterr().out
    assert "[r1:c] rejected by quality" in out and "r1:b" not in out
    assert "quality    0.500 FAIL  q" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "{missing}"], "no run at"),
        (["show", "{missing}", "--round", "1"], "no run at"),
        (["resume", "{missing}"], "no run at"),
        (["inspect", "{run}", "--round", "7"], "has no completed round 7"),
        (["show", "{run}", "--round", "7"], "no critiqued candidates for round 7"),
        (["resume", "{run}", "--from-round", "9"], "--from-round 9 is out of range"),
        (["resume", "{run}", "--from-round", "0"], "--from-round 0 is out of range"),
    ],
)
def test_bad_run_requests_exit_2(run_dir: Path, tmp_path: Path, capsys, argv, message) -> None:
    argv = [a.format(run=run_dir, missing=tmp_path / "nope") for a in argv]
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert not (tmp_path / "nope").exists()


def test_run_refuses_an_existing_run_folder(run_dir: Path, capsys) -> None:
    before = (run_dir / "config.toml").read_text()
    assert main(["run", str(REPO / "config.toml"), "--run-dir", str(run_dir)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run_dir / "config.toml").read_text() == before


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.replace("[generate]", "[generate]\nprompts_per_rnd = 3"),
            "did you mean 'prompts_per_round'",
        ),
        (lambda t: t.replace("rounds = 3", 'rounds = "three"'), "run.rounds"),
        (
            lambda t: t.replace("[run]", "[run"),
            "malformed TOML: Expected ']' at the end of a table declaration (at line 5, column 5)",
        ),
        (
            lambda t: t.replace(
                'seed_file = "generators/data/seeds.jsonl"', 'seed_file = "nowhere.jsonl"'
            ),
            "generate.seed_file",
        ),
    ],
)
def test_run_with_bad_config_writes_nothing(tmp_path: Path, capsys, edit, message) -> None:
    edited = edit((REPO / "config.toml").read_text())
    assert edited != (REPO / "config.toml").read_text()
    config = tmp_path / "config.toml"
    config.write_text(anchored(edited))
    assert main(["run", str(config), "--run-dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "policy, message",
    [
        ("./no-such-model", "'model.policy': model folder not found"),
        ("embedded:gpt-17", "unknown embedded model 'embedded:gpt-17'"),
    ],
)
def test_run_with_missing_model_writes_nothing(tmp_path: Path, capsys, policy, message) -> None:
    text = anchored((REPO / "config.toml").read_text())
    text = text.replace('policy = "embedded:smollm2-135m-instruct"', f'policy = "{policy}"')
    (tmp_path / "config.toml").write_text(text)
    assert main(["run", str(tmp_path / "config.toml"), "--run-dir", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_run_with_a_crows_file_without_its_columns_writes_nothing(tmp_path: Path, capsys) -> None:
    crows = tmp_path / "crows.csv"
    crows.write_text("sentence,group\nThey cook.,age\n", encoding="utf-8")
    text = anchored((REPO / "config.toml").read_text())
    text = text.replace('crows_pairs_file = ""', f'crows_pairs_file = "{crows}"')
    (tmp_path / "config.toml").write_text(text)

    assert main(["run", str(tmp_path / "config.toml"), "--run-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"selfloop: error: {crows}: not a CrowS-Pairs CSV: missing columns sent_more, sent_less, "
        "stereo_antistereo, bias_type (expected sent_more, sent_less, stereo_antistereo, "
        "bias_type; found: sentence, group)\n"
    )
    assert not (tmp_path / "out").exists()


def test_run_with_target_modules_the_model_lacks_writes_nothing(
    tmp_path: Path, tiny_model_dir: Path, capsys
) -> None:
    text = anchored((REPO / "config.toml").read_text())
    (tmp_path / "config.toml").write_text(text)
    argv = ["run", str(tmp_path / "config.toml"), "--run-dir", str(tmp_path / "out")]
    argv += ["--set", f"model.policy={tiny_model_dir}"]

    bad = '["q_proj", "qproj", "mlp"]'  # a typo, and a block that holds layers but is none
    assert main([*argv, "--set", f"train.target_modules={bad}"]) == 2
    assert capsys.readouterr().err == (
        f"selfloop: error: 'train.target_modules': no layer of {tiny_model_dir} that a LoRA can "
        "train is named 'qproj' or 'mlp'; its layers are named down_proj, embed_tokens, "
        "gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "targets, error",
    [
        (["self_attn.q_proj", "layers.0.mlp.up_proj", "lm_head"], None),
        (["proj"], "is named 'proj';"),  # a name ends at a dot: no layer is called "proj"
    ],
)
def test_target_modules_match_whole_names_and_dotted_ends(
    tmp_path: Path, tiny_model_dir: Path, write_config, targets: list, error: str | None
) -> None:
    from loop.driver import check_target_modules

    model = {"policy": str(tiny_model_dir), "dtype": "float32"}
    cfg = load_config(write_config(tmp_path, model=model, train={"target_modules": targets}))
    if error is None:
        check_target_modules(cfg, str(tiny_model_dir))
    else:
        with pytest.raises(UserError, match=error):
            check_target_modules(cfg, str(tiny_model_dir))


def test_full_fine_tuning_does_not_read_target_modules(tmp_path: Path, write_config) -> None:
    from loop.driver import check_target_modules

    train = {"target_modules": ["proj"], "strategy": "full"}
    check_target_modules(load_config(write_config(tmp_path, train=train)), str(tmp_path / "none"))


def test_run_with_more_actors_than_this_machine_holds_writes_nothing(
    tmp_path: Path, tiny_model_dir: Path, capsys
) -> None:
    """Each actor fits alone, but all of them together do not: refused before the run folder
    exists, so the same command with smaller actors needs no --overwrite."""
    import os

    cpus = os.cpu_count()
    (tmp_path / "config.toml").write_text(anchored((REPO / "config.toml").read_text()))
    argv = ["run", str(tmp_path / "config.toml"), "--run-dir", str(tmp_path / "out")]
    argv += ["--set", f"model.policy={tiny_model_dir}", "--set", "actors.generator_cpus=1.0"]

    assert main([*argv, "--set", f"actors.generators={cpus}"]) == 2
    assert capsys.readouterr().err == (
        f"selfloop: error: the actors ask for {cpus + 1:g} CPUs in all and this machine has "
        f"{cpus:g}; lower actors.*_cpus or the actor counts (actors.generators, actors.critics)\n"
    )
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--set", f"actors.trainer_cpus={cpus + 1}.0"]) == 2
    assert capsys.readouterr().err == (
        f"selfloop: error: 'actors.trainer_cpus' = {cpus + 1}.0 but this machine has {cpus:g} "
        "CPUs; lower it\n"
    )
    assert not (tmp_path / "out").exists()


def test_run_names_what_to_do_with_an_existing_run(run_dir: Path, tmp_path: Path, capsys) -> None:
    same = tmp_path / "same.toml"
    same.write_text((run_dir / "config.toml").read_text())
    assert main(["run", str(same), "--run-dir", str(run_dir)]) == 2
    assert f"continue it with `selfloop resume {run_dir}`" in capsys.readouterr().err
    assert main(["run", str(REPO / "config.toml"), "--run-dir", str(run_dir), "--rounds", "9"]) == 2
    assert "its config differs from this one" in capsys.readouterr().err


def test_run_with_missing_config_file(tmp_path: Path, capsys) -> None:
    assert main(["run", str(tmp_path / "absent.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_run_with_empty_seed_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "seeds.jsonl").write_text("\n")
    text = (REPO / "config.toml").read_text()
    text = text.replace(
        'seed_file = "generators/data/seeds.jsonl"', f'seed_file = "{tmp_path / "seeds.jsonl"}"'
    )
    (tmp_path / "config.toml").write_text(anchored(text))
    assert main(["run", str(tmp_path / "config.toml"), "--run-dir", str(tmp_path / "out")]) == 2
    assert "holds no instructions" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.toml").write_text("[run]\n")
    (project / "notes.txt").write_text("keep me")
    argv = ["run", str(REPO / "config.toml"), "--run-dir", str(project), "--overwrite"]
    assert main(argv) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert (project / "notes.txt").read_text() == "keep me"
    assert main(["inspect", str(project)]) == 2


def test_damaged_run_files_give_a_message_not_a_traceback(run_dir: Path, capsys) -> None:
    (run_dir / "round_001" / "metrics.json").write_text("{")
    assert main(["inspect", str(run_dir)]) == 2
    assert "metrics.json is missing or damaged" in capsys.readouterr().err
    (run_dir / "round_001" / "metrics.json").write_text('{"round": 1}')
    assert main(["inspect", str(run_dir)]) == 2
    assert "--from-round 1" in capsys.readouterr().err
    for arrow in (run_dir / "round_002" / "candidates").glob("*.arrow"):
        arrow.write_bytes(b"broken")
    assert main(["show", str(run_dir), "--round", "2"]) == 2
    assert "is missing or damaged" in capsys.readouterr().err


def test_show_names_the_critics_when_asked_for_an_unknown_one(run_dir: Path, capsys) -> None:
    assert main(["show", str(run_dir), "--round", "1", "--rejected", "--critic", "nosuch"]) == 2
    assert "this run's critics are rules, quality, persona, dedup" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["run", "--rounds", "0"], ["show", "x", "--round", "1", "--limit", "-3"]]
)
def test_counts_below_one_are_refused(argv) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2


@pytest.mark.parametrize(
    "setting, message",
    [
        ("train.epochs", "write KEY=VALUE"),
        ("train.epochz=1", "did you mean 'epochs'"),
        ("generate.seed_file=nowhere.jsonl", "generate.seed_file"),
    ],
)
def test_run_with_a_bad_set_writes_nothing(tmp_path: Path, capsys, setting, message) -> None:
    out = tmp_path / "out"
    assert main(["run", str(REPO / "config.toml"), "--run-dir", str(out), "--set", setting]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
