"""Real examples mixed into a round's survivors: exact counts at each share, the share 1 limit,
a short file used again, determinism, bad files and the config keys."""

import json
from collections import Counter
from pathlib import Path

import pytest

from loop.config import load_config
from loop.errors import ConfigError
from loop.mix import REAL, load_real, mix, real_count

SYN = [
    {
        "id": f"s{i}",
        "prompt_id": f"p{i}",
        "source": "seed",
        "instruction": f"Question {i}?",
        "response": f"Answer {i}.",
        "prompt": [{"role": "user", "content": f"Question {i}?"}],
        "completion": [{"role": "assistant", "content": f"Answer {i}."}],
        "combined_score": 0.9,
        "embedding": [0.0, 1.0],
    }
    for i in range(6)
]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


@pytest.fixture
def real(tmp_path: Path) -> list[dict]:
    lines = [{"instruction": f"Real task {i}", "response": f"Real answer {i}"} for i in range(10)]
    return load_real(write_jsonl(tmp_path / "real.jsonl", lines))


def test_load_real_gives_survivor_shaped_rows(real: list[dict]) -> None:
    assert len(real) == 10
    assert real[3] == {
        "id": "real-0004",  # line 4
        "prompt_id": "real-0004",
        "source": REAL,
        "instruction": "Real task 3",
        "response": "Real answer 3",
        "prompt": [{"role": "user", "content": "Real task 3"}],
        "completion": [{"role": "assistant", "content": "Real answer 3"}],
    }


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        (0.0, {"synthetic": 6, "real": 0, "real_repeats": 0}),
        (0.25, {"synthetic": 6, "real": 2, "real_repeats": 0}),  # 2 / (6 + 2)
        (0.5, {"synthetic": 6, "real": 6, "real_repeats": 0}),
        (0.625, {"synthetic": 6, "real": 10, "real_repeats": 0}),  # 10 / 16: the whole file
        (0.75, {"synthetic": 6, "real": 18, "real_repeats": 8}),  # 18 / 24, file of 10
        (1.0, {"synthetic": 0, "real": 6, "real_repeats": 0}),  # real only, same size
    ],
)
def test_counts(real: list[dict], share: float, expected: dict) -> None:
    rows, counts = mix(SYN, real, share, seed=0)
    assert counts == expected
    assert len(rows) == expected["synthetic"] + expected["real"]
    sources = Counter(r["source"] for r in rows)
    assert (sources["seed"], sources[REAL]) == (expected["synthetic"], expected["real"])
    assert len({r["id"] for r in rows}) == len(rows)  # ids stay unique


def test_share_zero_returns_the_survivors_as_they_are(real: list[dict]) -> None:
    assert mix(SYN, real, 0.0, seed=3) == (SYN, {"synthetic": 6, "real": 0, "real_repeats": 0})
    assert mix(SYN, [], 0.0, seed=3)[0] == SYN


def test_nearest_whole_row() -> None:
    assert real_count(10, 0.3) == 4  # 4.29 -> 4, a share of 4 / 14 = 0.286
    assert real_count(0, 0.5) == real_count(0, 1.0) == 0  # no survivors: nothing to train on
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        real_count(6, 1.5)


def test_a_short_file_is_used_again_evenly(real: list[dict]) -> None:
    rows, _ = mix(SYN, real, 0.75, seed=0)
    picked = [r["id"] for r in rows if r["source"] == REAL]
    uses = Counter(rid.split("~")[0] for rid in picked)
    assert set(uses) == {r["id"] for r in real}  # every row before any repeats
    assert sorted(uses.values()) == [1, 1] + [2] * 8
    assert sum(rid.endswith("~2") for rid in picked) == 8


def test_real_rows_carry_the_survivor_columns(real: list[dict]) -> None:
    rows, _ = mix(SYN, real, 0.25, seed=0)
    added = rows[6:]
    assert rows[:6] == SYN
    for row in added:
        assert row.keys() == SYN[0].keys()
        assert row["combined_score"] is None and row["embedding"] is None
        assert row["source"] == REAL
        assert row["completion"][0]["content"].startswith("Real answer")


def test_the_seed_decides_which_rows(real: list[dict]) -> None:
    first, _ = mix(SYN, real, 0.25, seed=7)
    again, _ = mix(SYN, real, 0.25, seed=7)
    other, _ = mix(SYN, real, 0.25, seed=8)
    assert first == again
    ids = [[r["id"] for r in rows[6:]] for rows in (first, other)]
    assert ids[0] != ids[1]


def test_a_share_without_real_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="needs real rows"):
        mix(SYN, [], 0.25, seed=0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"instruction": "a", "response": "b"}, {"instruction": "c"}], r":2: .*'response'"),
        ([{"instruction": "a", "response": "b"}, "{oops"], r":2: not valid JSON"),
        ([{"instruction": " ", "response": "b"}], r":1: .*'instruction'"),
        ([{"instruction": "a", "response": 3}], r":1: .*'response'"),
        ([{"id": "x", "instruction": "a", "response": "b"}] * 2, r":2: id 'x' is used at line 1"),
        (["", "  "], "holds no examples"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, lines: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_real(write_jsonl(tmp_path / "bad.jsonl", lines))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'train.real_file'.*does not exist"):
        load_real(tmp_path / "nope.jsonl")


def test_config_resolves_real_file_against_its_folder(tmp_path: Path, write_config) -> None:
    write_jsonl(tmp_path / "real.jsonl", [{"instruction": "a", "response": "b"}])
    cfg = load_config(write_config(tmp_path, train={"real_file": "real.jsonl", "real_share": 0.5}))
    assert cfg.train.real_file == str(tmp_path / "real.jsonl")
    assert cfg.train.real_share == 0.5
    assert cfg.train.strategy == "lora"


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"real_share": 0.5}, "real_share above 0 needs examples: set train.real_file"),
        ({"real_file": "real.jsonl", "real_share": 1.5}, "'train.real_share'"),
        ({"real_file": "nope.jsonl"}, "'train.real_file' names a file that does not exist"),
        ({"strategy": "qdora"}, "'train.strategy'"),
    ],
)
def test_bad_train_keys(tmp_path: Path, write_config, train: dict, message: str) -> None:
    write_jsonl(tmp_path / "real.jsonl", [{"instruction": "a", "response": "b"}])
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, train=train))
