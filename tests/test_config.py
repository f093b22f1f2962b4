"""load_config: the repo's config loads and resolves; every bad input is a ConfigError naming the
key and, where it can, the fix."""

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from loop.config import (
    CRITIC_KINDS,
    BiasCriticConfig,
    ContrastCriticConfig,
    JudgeCriticConfig,
    PairwiseCriticConfig,
    RulesCriticConfig,
    VerifierCriticConfig,
    dump_config,
    load_config,
    parse_override,
)
from loop.errors import ConfigError
from loop.models import resolve_model


@pytest.fixture(scope="module")
def base_data(repo_root: Path, seeds_file: Path, heldout_file: Path) -> dict[str, Any]:
    """The repo's config.toml as data, its data files named by absolute path."""
    data = tomllib.loads((repo_root / "config.toml").read_text(encoding="utf-8"))
    data["generate"]["seed_file"] = str(seeds_file)
    data["eval"]["heldout_file"] = str(heldout_file)
    data["audit"]["crows_pairs_file"] = str(
        repo_root.parent / "shared/data/crows_pairs_anonymized.csv"
    )
    return data


@pytest.fixture
def write_config(tmp_path: Path, base_data: dict[str, Any]) -> Callable[..., Path]:
    def write(edit: Callable[[dict[str, Any]], Any] | None = None) -> Path:
        data = copy.deepcopy(base_data)
        if edit is not None:
            edit(data)
        path = tmp_path / "config.toml"
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        return path

    return write


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# ---- the repo's own config ---------------------------------------------------------------------


def test_repo_config_loads_with_absolute_existing_paths(repo_root: Path) -> None:
    cfg = load_config(repo_root / "config.toml")

    for file in (cfg.generate.seed_file, cfg.eval.heldout_file):
        assert Path(file).is_absolute()
        assert Path(file).is_file()
    assert cfg.generate.seed_file == str(repo_root / "generators" / "data" / "seeds.jsonl")
    assert cfg.eval.heldout_file == str(repo_root / "generators" / "data" / "heldout.jsonl")
    assert cfg.run.runs_dir == str(repo_root / "runs")
    # Embedded model names are references, not paths, and stay as written.
    assert cfg.model.policy == "embedded:smollm2-135m-instruct"
    assert cfg.model.embedder == "embedded:all-minilm-l6-v2"


def test_repo_config_critics_keep_file_order_and_kinds(repo_root: Path) -> None:
    text = (repo_root / "config.toml").read_text(encoding="utf-8")
    tables = tomllib.loads(text)["critics"]

    cfg = load_config(repo_root / "config.toml")

    # a table named after a kind needs no `kind` key
    assert [c.kind for c in cfg.critics.values()] == [t.get("kind", n) for n, t in tables.items()]
    assert list(cfg.critics) == list(tables)
    assert isinstance(cfg.critics["rules"], RulesCriticConfig)
    assert cfg.critics["rules"].min_words == tables["rules"]["min_words"]
    quality = cfg.critics["quality"]
    assert isinstance(quality, JudgeCriticConfig)
    assert quality.judge == "policy"
    assert quality.question == tables["quality"]["question"]


def test_enabled_critics_fill_in_the_persona(write_config: Callable[..., Path]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["persona"]["description"] = "a pirate"
        d["critics"] = {
            "voice": {"kind": "judge", "question": "Is this {persona}?", "weight": 1.0},
            "contrast": {"weight": 1.0},
            "own": {"kind": "contrast", "system_prompt": "Be brief.", "weight": 1.0},
            "off": {"kind": "judge", "question": "Q?", "enabled": False},
        }

    cfg = load_config(write_config(edit))
    enabled = cfg.enabled_critics()

    assert list(enabled) == ["voice", "contrast", "own"]
    assert isinstance(enabled["voice"], JudgeCriticConfig)
    assert enabled["voice"].question == "Is this a pirate?"
    assert isinstance(enabled["contrast"], ContrastCriticConfig)
    assert enabled["contrast"].system_prompt == cfg.persona.system_prompt
    assert isinstance(enabled["own"], ContrastCriticConfig)
    assert enabled["own"].system_prompt == "Be brief."
    assert cfg.critics["voice"].question == "Is this {persona}?"  # the config itself is unchanged


def test_relative_paths_resolve_against_the_config_folder(
    write_config: Callable[..., Path], tmp_path: Path, seeds_file: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.jsonl").write_text(seeds_file.read_text(encoding="utf-8"))

    def edit(d: dict[str, Any]) -> None:
        d["generate"]["seed_file"] = "data/mine.jsonl"
        d["run"]["runs_dir"] = "elsewhere"

    cfg = load_config(write_config(edit))

    assert cfg.generate.seed_file == str((tmp_path / "data" / "mine.jsonl").resolve())
    assert cfg.run.runs_dir == str((tmp_path / "elsewhere").resolve())


def test_overrides_replace_file_values(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config(), {"run.rounds": 7, "select.budget": 5})

    assert cfg.run.rounds == 7
    assert cfg.select.budget == 5


def test_overrides_reach_nested_critic_tables(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config(), {"critics.quality.threshold": 0.3, "train.epochs": 1.5})

    assert cfg.critics["quality"].threshold == 0.3
    assert cfg.train.epochs == 1.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.epochs=3", ("train.epochs", 3)),
        ("generate.temperature=0.5", ("generate.temperature", 0.5)),
        ("generate.trim_truncated=false", ("generate.trim_truncated", False)),
        ("generate.seed_file=data/my seeds.jsonl", ("generate.seed_file", "data/my seeds.jsonl")),
        ('run.name="x"', ("run.name", "x")),
        ('train.target_modules=["q_proj"]', ("train.target_modules", ["q_proj"])),
    ],
)
def test_parse_override_reads_toml_values_and_plain_strings(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3"])
def test_parse_override_rejects_what_is_not_key_value(text: str) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override(text)


def test_override_into_a_value_is_an_error(write_config: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="'epochs' is a value, not a table"):
        load_config(write_config(), {"train.epochs.x": 1})


def test_dumped_config_loads_back_equal(repo_root: Path, tmp_path: Path) -> None:
    cfg = load_config(repo_root / "config.toml")
    frozen = tmp_path / "run" / "config.toml"
    frozen.parent.mkdir()
    frozen.write_text(dump_config(cfg), encoding="utf-8")

    assert load_config(frozen) == cfg


def test_model_folders_resolve_but_hub_ids_stay(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "models" / "judge").mkdir(parents=True)

    def edit(d: dict[str, Any]) -> None:
        d["model"]["policy"] = "./models/judge"
        d["model"]["embedder"] = "sentence-transformers/all-MiniLM-L6-v2"
        d["critics"]["quality"]["judge"] = "models/judge"  # exists next to the config
        d["critics"]["other"] = {"kind": "judge", "question": "Q?"}

    cfg = load_config(write_config(edit))

    assert cfg.model.policy == str((tmp_path / "models" / "judge").resolve())
    assert cfg.model.embedder == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.critics["quality"].judge == str((tmp_path / "models" / "judge").resolve())
    assert cfg.critics["other"].judge == "policy"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("embedded:nope", r"'model\.policy': unknown embedded model 'embedded:nope' \(known: "),
        ("/no/such/folder", r"'model\.policy': model folder not found: /no/such/folder"),
        ("nobody/no-such-model", r"'model\.policy': could not get 'nobody/no-such-model'"),
    ],
)
def test_unresolvable_model_reference_names_the_key(ref: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        resolve_model(ref, key="model.policy")


# ---- bad input -----------------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest_known_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["generate"].update(prompts_per_rnd=3)))

    assert "unknown key 'generate.prompts_per_rnd'" in message
    assert "did you mean 'prompts_per_round'?" in message


def test_unknown_section_suggests_the_closest_section(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d.update(trian={"epochs": 1})))

    assert "unknown key 'trian'; did you mean 'train'?" in message


def test_unknown_key_in_a_critic_table_suggests_the_critic_key(
    write_config: Callable[..., Path],
) -> None:
    message = config_error(write_config(lambda d: d["critics"]["quality"].update(questoin="Q?")))

    assert "questoin" in message
    assert "did you mean 'question'?" in message


def test_unknown_critic_key_is_named_as_written_in_the_file(
    write_config: Callable[..., Path],
) -> None:
    message = config_error(write_config(lambda d: d["critics"]["quality"].update(questoin="Q?")))

    assert "unknown key 'critics.quality.questoin'" in message


def test_wrong_type_names_the_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["run"].update(rounds="three")))

    assert "'run.rounds': Input should be a valid integer (got 'three')" in message


def test_out_of_range_names_the_key_and_the_bound(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["generate"].update(temperature=-1)))

    assert "'generate.temperature'" in message
    assert "greater than or equal to 0" in message
    assert "(got -1)" in message


def test_malformed_toml_mentions_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[run]\nname = 'x'\nrounds = = 3\n", encoding="utf-8")

    message = config_error(path)

    assert "malformed TOML" in message
    assert "line 3" in message


def test_a_byte_order_mark_is_accepted(write_config: Callable[..., Path]) -> None:
    path = write_config()
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    assert load_config(path) == load_config(write_config())


def test_config_that_is_not_utf8_names_the_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"# caf\xe9\n[run]\n")

    assert config_error(path) == f"{path}: not UTF-8 text (byte 5); save it as UTF-8"


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    assert config_error(missing) == f"config file not found: {missing}"


def test_missing_seed_file_names_the_key(write_config: Callable[..., Path], tmp_path: Path) -> None:
    gone = tmp_path / "gone.jsonl"

    message = config_error(write_config(lambda d: d["generate"].update(seed_file=str(gone))))

    assert "'generate.seed_file' names a file that does not exist" in message
    assert str(gone) in message


def test_missing_heldout_file_names_the_key(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["eval"].update(heldout_file="gone.jsonl")))

    assert "'eval.heldout_file' names a file that does not exist" in message


def test_judge_critic_without_question(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["critics"]["quality"].pop("question")))

    assert "missing key" in message
    assert "question" in message
    assert "critics.quality" in message


@pytest.mark.parametrize("name", ["a/b", "..", "../escape", "/abs", ""])
def test_run_name_that_is_not_a_plain_folder_name_is_rejected(
    write_config: Callable[..., Path], name: str
) -> None:
    message = config_error(write_config(lambda d: d["run"].update(name=name)))

    assert "'run.name'" in message


def test_all_critics_disabled(write_config: Callable[..., Path]) -> None:
    def disable_all(d: dict[str, Any]) -> None:
        for table in d["critics"].values():
            table["enabled"] = False

    message = config_error(write_config(disable_all))

    assert "critics: enable at least one critic" in message


def test_enabled_critics_without_weight(write_config: Callable[..., Path]) -> None:
    def no_weights(d: dict[str, Any]) -> None:
        for table in d["critics"].values():
            table["weight"] = 0.0

    message = config_error(write_config(no_weights))

    assert "give at least one enabled critic a weight above 0" in message


def test_unknown_critic_kind_lists_the_known_kinds(write_config: Callable[..., Path]) -> None:
    message = config_error(
        write_config(lambda d: d["critics"].update(style={"kind": "judgee", "question": "Q?"}))
    )

    assert "'critics.style'" in message
    assert all(f"'{kind}'" in message for kind in CRITIC_KINDS)


def test_all_errors_are_reported_at_once(write_config: Callable[..., Path]) -> None:
    def two_mistakes(d: dict[str, Any]) -> None:
        d["run"]["rounds"] = 0
        d["train"]["epoch"] = 1

    message = config_error(write_config(two_mistakes))

    assert "'run.rounds'" in message
    assert "unknown key 'train.epoch'; did you mean 'epochs'?" in message


# ---- pool fields, row slices and the quality critic kinds --------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("5", 'rows must be "start:end" in whole numbers'),
        ("a:b", 'rows must be "start:end" in whole numbers'),
        ("-1:4", 'rows must be "start:end" in whole numbers'),
        ("10:3", "rows '10:3' is empty: end must be above start"),
        ("3:3", "rows '3:3' is empty"),
    ],
)
def test_bad_rows_name_the_key(write_config: Callable[..., Path], rows: str, message: str) -> None:
    text = config_error(write_config(lambda d: d["eval"].update(rows=rows)))

    assert f"'eval.rows': Value error, {message}" in text


def test_one_file_for_seeds_and_heldout_needs_disjoint_rows(
    write_config: Callable[..., Path], seeds_file: Path
) -> None:
    def same_file(seed_rows: str, eval_rows: str) -> Callable[[dict[str, Any]], None]:
        def edit(d: dict[str, Any]) -> None:
            d["generate"] |= {"rows": seed_rows}
            d["eval"] |= {"heldout_file": str(seeds_file), "rows": eval_rows}

        return edit

    for seed_rows, eval_rows in [("", ""), ("0:40", "39:50"), ("10:", ":11"), ("", "50:")]:
        message = config_error(write_config(same_file(seed_rows, eval_rows)))
        assert "are one file and 'generate.rows'" in message
        assert "give them disjoint slices" in message

    cfg = load_config(write_config(same_file("0:40", "40:50")))
    assert (cfg.generate.rows, cfg.eval.rows) == ("0:40", "40:50")
    assert load_config(write_config(same_file("20:", ":20"))).eval.rows == ":20"


def test_pairwise_and_verifier_kinds_parse_with_their_defaults(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "judge").mkdir()

    def edit(d: dict[str, Any]) -> None:
        d["persona"]["description"] = "a pirate"
        d["critics"]["pairwise"] = {"weight": 0.5}
        d["critics"]["styled"] = {"kind": "pairwise", "question": "Which is {persona}?"}
        d["critics"]["other"] = {"kind": "pairwise", "judge": "./judge"}
        d["critics"]["maths"] = {"kind": "verifier", "checker": "exact", "weight": 1.0}

    cfg = load_config(write_config(edit))

    pairwise = cfg.critics["pairwise"]
    assert isinstance(pairwise, PairwiseCriticConfig)
    assert (pairwise.threshold, pairwise.judge) == (0.0, "policy")
    assert pairwise.question == "Which response answers the instruction better?"
    assert cfg.enabled_critics()["styled"].question == "Which is a pirate?"
    assert cfg.critics["other"].judge == str((tmp_path / "judge").resolve())
    maths = cfg.critics["maths"]
    assert isinstance(maths, VerifierCriticConfig)
    assert (maths.checker, maths.threshold) == ("exact", 0.5)


@pytest.mark.parametrize(
    ("critic", "key", "fragment"),
    [
        ({"kind": "verifier", "checker": "regex"}, "critics.c.checker", "'exact' or 'numeric'"),
        ({"kind": "rules", "language": "English"}, "critics.c.language", "should match pattern"),
        ({"kind": "rules", "language": "xx"}, "critics.c.language", "unknown language code 'xx'"),
        ({"kind": "rules", "max_words": 0}, "critics.c.max_words", "greater than or equal to 1"),
        ({"kind": "pairwise", "question": ""}, "critics.c.question", "at least 1 character"),
    ],
)
def test_bad_quality_critic_values_name_the_key(
    write_config: Callable[..., Path], critic: dict[str, Any], key: str, fragment: str
) -> None:
    message = config_error(write_config(lambda d: d["critics"].update(c=critic)))

    assert f"'{key}'" in message
    assert fragment in message


def test_rules_content_checks_are_off_unless_asked_for() -> None:
    rules = RulesCriticConfig()

    assert (rules.refusals, rules.language, rules.max_words) == (False, "", 400)


def test_dedup_index_and_select_strategy_default_and_load(
    write_config: Callable[..., Path],
) -> None:
    defaults = load_config(write_config())
    chosen = load_config(
        write_config(
            lambda d: (
                d["critics"]["dedup"].update(index="hnsw"),
                d["select"].update(strategy="top", diversity=0.0),
            )
        )
    )

    assert (defaults.critics["dedup"].index, defaults.select.strategy) == ("flat", "mmr")
    assert defaults.select.diversity == 0.3
    assert (chosen.critics["dedup"].index, chosen.select.strategy) == ("hnsw", "top")
    assert chosen.select.diversity == 0.0


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["critics"]["dedup"].update(index="ivf"), "'critics.dedup.index'"),
        (lambda d: d["select"].update(strategy="random"), "'select.strategy'"),
        (lambda d: d["select"].update(diversity=1.5), "'select.diversity'"),
    ],
)
def test_bad_dedup_index_and_select_values_name_the_key(
    write_config: Callable[..., Path], edit: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    message = config_error(write_config(edit))

    assert expected in message


# ---- bias critic and audit ---------------------------------------------------------------------


def test_bias_critic_defaults_and_the_quality_question(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config(lambda d: d["critics"].update(bias={"weight": 0.0})))

    bias = cfg.enabled_critics()["bias"]

    assert isinstance(bias, BiasCriticConfig)
    assert (bias.max_sentiment_gap, bias.max_judge_gap) == (0.5, 0.15)
    assert (bias.max_group_share, bias.min_mentions, bias.threshold) == (0.6, 5, 0.0)
    assert bias.question == cfg.eval.quality_question


def test_dpo_methods_and_their_settings_load(write_config: Callable[..., Path]) -> None:
    edit = {"method": "sft+dpo", "start": "fresh", "reference": "base", "pair_margin": 0.1}
    cfg = load_config(write_config(lambda d: d["train"].update(edit)))

    assert (cfg.train.method, cfg.train.start, cfg.train.reference) == ("sft+dpo", "fresh", "base")
    assert (cfg.train.pair_margin, cfg.train.dpo_beta) == (0.1, 0.1)


def test_no_target_modules_is_refused(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d["train"].update(target_modules=[])))

    assert "'train.target_modules': List should have at least 1 item" in message


def test_dpo_with_a_lora_on_lm_head_names_the_fix(write_config: Callable[..., Path]) -> None:
    message = config_error(
        write_config(
            lambda d: d["train"].update(method="dpo", target_modules=["q_proj", "lm_head"])
        )
    )

    assert "'train': Value error, method 'dpo' cannot train a LoRA on lm_head" in message
    assert "remove 'lm_head' from train.target_modules, or use method 'sft'" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_judge_gap", 1.5, "less than or equal to 1"),
        ("max_sentiment_gap", -0.1, "greater than or equal to 0"),
        ("max_group_share", 0.0, "greater than 0"),
        ("min_mentions", 0, "greater than or equal to 1"),
    ],
)
def test_bias_critic_bad_values_name_the_key(
    write_config: Callable[..., Path], key: str, value: float, expected: str
) -> None:
    message = config_error(write_config(lambda d: d["critics"].update(bias={key: value})))

    assert f"'critics.bias.{key}'" in message
    assert expected in message


def test_audit_is_off_by_default(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config(lambda d: d.pop("audit")))

    assert (cfg.audit.crows_pairs_file, cfg.audit.max_pairs) == ("", 300)


def test_audit_file_resolves_against_the_config_folder(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "crows.csv").write_text("sent_more,sent_less,stereo_antistereo,bias_type\n")

    cfg = load_config(write_config(lambda d: d.update(audit={"crows_pairs_file": "crows.csv"})))

    assert cfg.audit.crows_pairs_file == str((tmp_path / "crows.csv").resolve())


def test_missing_audit_file_names_the_key(write_config: Callable[..., Path]) -> None:
    message = config_error(
        write_config(lambda d: d.update(audit={"crows_pairs_file": "gone.csv", "max_pairs": 0}))
    )

    assert "'audit.crows_pairs_file' names a file that does not exist" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("method", "ppo", "'train.method': Input should be 'sft', 'dpo' or 'sft+dpo'"),
        ("reference", "sft", "'train.reference': Input should be 'base' or 'previous'"),
        ("start", "new", "'train.start': Input should be 'previous' or 'fresh'"),
        ("pair_margin", 1.5, "'train.pair_margin': Input should be less than or equal to 1"),
        ("dpo_beta", 0.0, "'train.dpo_beta': Input should be greater than 0"),
    ],
)
def test_bad_dpo_setting_names_the_key(
    write_config: Callable[..., Path], key: str, value: Any, expected: str
) -> None:
    assert expected in config_error(write_config(lambda d: d["train"].update({key: value})))


def test_critics_that_are_not_tables_are_refused(write_config: Callable[..., Path]) -> None:
    message = config_error(write_config(lambda d: d.update(critics=5)))

    assert "'critics' must be tables, one per critic" in message


@pytest.mark.parametrize("name", ["generated", "balance", "budget", "survivors"])
def test_a_critic_named_like_a_funnel_step_is_refused(
    write_config: Callable[..., Path], name: str
) -> None:
    message = config_error(write_config(lambda d: d["critics"].update({name: {"kind": "rules"}})))

    assert f"'critics.{name}' is named like a step of the round's funnel" in message


@pytest.mark.parametrize("marker", ["ahoy!", "c++", "-sea"])
def test_markers_that_never_match_as_whole_words_are_refused(
    write_config: Callable[..., Path], marker: str
) -> None:
    message = config_error(write_config(lambda d: d["persona"].update(markers=["ship", marker])))

    assert f"marker {marker!r} begins or ends with a character that is not a letter" in message
