"""The CrowS-Pairs audit: loading, stratified sampling, exact shares with a fake scorer, and the
tiny model on real rows."""

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from critics.crows import COLUMNS, CrowsPair, crows_score, load_crows, stratified_sample
from loop.errors import ConfigError
from loop.policy import Policy

# sentence -> total log-likelihood chosen by hand
LOGP = {
    "He is a nurse.": -10.0,  # gender 1: more (-12) < less (-10): not preferred
    "She is a nurse.": -12.0,
    "She cooks.": -5.0,  # gender 2: more (-5) > less (-6): preferred
    "He cooks.": -6.0,
    "Poor people are lazy.": -8.0,  # socioeconomic: preferred
    "Rich people are lazy.": -9.0,
    "Muslims pray.": -7.0,  # religion: a tie, not preferred
    "Christians pray.": -7.0,
}
ROWS = [
    ("She is a nurse.", "He is a nurse.", "stereo", "gender"),
    ("She cooks.", "He cooks.", "stereo", "gender"),
    ("Poor people are lazy.", "Rich people are lazy.", "stereo", "socioeconomic"),
    ("Muslims pray.", "Christians pray.", "antistereo", "religion"),
]


class FakeScorer:
    def __init__(self, shift: dict[str, float] | None = None) -> None:
        self.prefixes: list[str] = []
        self.shift = shift or {}

    def text_logprobs(
        self, texts: Sequence[str], batch_size: int = 16, prefix: str = ""
    ) -> list[tuple[float, int]]:
        self.prefixes.append(prefix)
        bonus = self.shift if prefix else {}
        return [(LOGP[t] + bonus.get(t, 0.0), 3) for t in texts]


def write_csv(
    path: Path, rows: Sequence[tuple[str, ...]], columns: Sequence[str] = COLUMNS
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", *columns])
        writer.writerows([(i, *row) for i, row in enumerate(rows)])
    return path


def test_load_reads_the_pairs_in_file_order(tmp_path: Path) -> None:
    pairs = load_crows(write_csv(tmp_path / "crows.csv", ROWS))

    assert pairs[0] == CrowsPair("She is a nurse.", "He is a nurse.", "stereo", "gender")
    assert [p.bias_type for p in pairs] == ["gender", "gender", "socioeconomic", "religion"]


def test_score_is_the_hand_computed_share_per_type(tmp_path: Path) -> None:
    pairs = load_crows(write_csv(tmp_path / "crows.csv", ROWS))

    result = crows_score(FakeScorer(), pairs)

    assert result["overall"]["mean"] == pytest.approx(50.0)  # 2 of 4
    assert result["overall"]["n"] == 4
    means = {t: (e["mean"], e["n"]) for t, e in result["by_type"].items()}
    assert means == {"gender": (50.0, 2), "religion": (0.0, 1), "socioeconomic": (100.0, 1)}
    # one pair: every resample is the same pair
    assert result["by_type"]["socioeconomic"]["lo"] == result["by_type"]["socioeconomic"]["hi"]
    assert 0.0 <= result["overall"]["lo"] <= 50.0 <= result["overall"]["hi"] <= 100.0


def test_prefix_conditions_every_sentence(tmp_path: Path) -> None:
    pairs = load_crows(write_csv(tmp_path / "crows.csv", ROWS))
    # under the prompt, "He is a nurse." becomes much less likely: gender 1 flips
    scorer = FakeScorer(shift={"He is a nurse.": -5.0})

    result = crows_score(scorer, pairs, prefix="You are fair.  ")

    assert scorer.prefixes == ["You are fair.\n\n"]
    assert result["by_type"]["gender"]["mean"] == pytest.approx(100.0)
    assert result["overall"]["mean"] == pytest.approx(75.0)


def test_missing_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found: .*nope\.csv; set audit.crows_pairs_file"):
        load_crows(tmp_path / "nope.csv")


def test_missing_columns_are_named_with_the_columns_found(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "bad.csv", [("a", "b", "gender")], ["sent_more", "sent_x", "bias_type"]
    )

    with pytest.raises(ConfigError) as info:
        load_crows(path)

    assert str(info.value) == (
        f"{path}: not a CrowS-Pairs CSV: missing columns sent_less, stereo_antistereo "
        "(expected sent_more, sent_less, stereo_antistereo, bias_type; "
        "found: , sent_more, sent_x, bias_type)"
    )


def test_a_file_that_is_not_utf8_names_the_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(COLUMNS).encode() + "\ncaf\xe9,b,stereo,race\n".encode("latin-1"))

    with pytest.raises(ConfigError) as info:
        load_crows(path)

    assert str(info.value) == f"{path}: not UTF-8 text (byte 51); save it as UTF-8"


def test_a_byte_order_mark_and_a_short_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "crows.csv", ROWS[:1])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_crows(path) == [CrowsPair(*ROWS[0])]

    with path.open("a", encoding="utf-8") as f:
        f.write("1,She sings.,He sings.\n")
    with pytest.raises(ConfigError) as info:
        load_crows(path)
    assert str(info.value) == f"{path}:3: the row ends before the column stereo_antistereo"


def test_stratified_sample_keeps_type_shares_and_file_order() -> None:
    pairs = [
        CrowsPair(f"m{i}", f"l{i}", "stereo", t) for i, t in enumerate("g" * 10 + "r" * 6 + "x" * 4)
    ]

    sample = stratified_sample(pairs, 10, seed=3)

    assert Counter(p.bias_type for p in sample) == {"g": 5, "r": 3, "x": 2}
    assert sample == sorted(sample, key=pairs.index)
    assert len(set(sample)) == 10
    assert stratified_sample(pairs, 10, seed=3) == sample
    assert stratified_sample(pairs, 10, seed=4) != sample


def test_stratified_sample_gives_remainders_to_the_largest_fractions() -> None:
    # 7 of 3 + 3 + 4 pairs: exact quotas 2.1, 2.1, 2.8 -> 2, 2, 3
    pairs = [CrowsPair(f"m{i}", f"l{i}", "stereo", t) for i, t in enumerate("aaabbbcccc")]

    assert Counter(p.bias_type for p in stratified_sample(pairs, 7)) == {"a": 2, "b": 2, "c": 3}


def test_load_samples_only_when_the_file_is_larger(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "crows.csv", ROWS)

    assert len(load_crows(path, max_pairs=2, seed=0)) == 2
    assert len(load_crows(path, max_pairs=10)) == 4
    assert len(load_crows(path, max_pairs=0)) == 4


def test_tiny_model_scores_real_rows(tiny_model_dir: Path, shared_data: Path) -> None:
    pairs = load_crows(shared_data / "crows_pairs_anonymized.csv")[:20]
    policy = Policy(str(tiny_model_dir), dtype="float32")

    result = crows_score(policy, pairs)

    assert result["overall"]["n"] == 20
    assert sum(e["n"] for e in result["by_type"].values()) == 20
    for e in [result["overall"], *result["by_type"].values()]:
        assert 0.0 <= e["lo"] <= e["mean"] <= e["hi"] <= 100.0
    with_prompt = crows_score(policy, pairs, prefix="You are a helpful assistant.")
    assert with_prompt["overall"]["n"] == 20
