"""length_bias: rank and linear correlation of judge scores with response length, on hand-made
data, and NaN (not a crash) where a correlation is undefined."""

import math

import pytest

from critics.judge import length_bias


def test_perfectly_monotone_and_reversed() -> None:
    up = length_bias([0.1, 0.2, 0.3, 0.9], [10, 20, 30, 40])
    down = length_bias([0.9, 0.5, 0.2], [5, 50, 500])

    assert up["spearman"] == pytest.approx(1.0)
    # x - mean: -.275 -.175 -.075 .525; y - mean: -15 -5 5 15
    # r = 12.5 / sqrt(0.3875 * 500) = 0.898027
    assert up["pearson"] == pytest.approx(0.898027, abs=1e-6)
    assert up["n"] == 4
    assert down["spearman"] == pytest.approx(-1.0)
    assert down["n"] == 3


def test_exactly_linear_scores_have_pearson_one() -> None:
    assert length_bias([0.2, 0.4, 0.6], [1, 2, 3])["pearson"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "lengths", "n"),
    [
        ([], [], 0),
        ([0.1, 0.9], [3, 4], 2),  # fewer than 3 pairs
        ([0.5, 0.5, 0.5], [3, 4, 5], 3),  # constant scores
        ([0.1, 0.2, 0.3], [7, 7, 7], 3),  # constant lengths
        ([0.1, math.nan, 0.3, 0.4], [1, 2, 3, math.inf], 2),  # non-finite pairs are dropped
    ],
)
def test_undefined_correlations_are_nan(scores: list[float], lengths: list[float], n: int) -> None:
    got = length_bias(scores, lengths)

    assert math.isnan(got["spearman"]) and math.isnan(got["pearson"])
    assert got["n"] == n


def test_a_nan_score_drops_only_its_pair() -> None:
    got = length_bias([0.1, math.nan, 0.3, 0.4], [1, 2, 3, 4])

    assert got == {"spearman": pytest.approx(1.0), "pearson": pytest.approx(1.0), "n": 3}


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="3 scores but 2 lengths"):
        length_bias([0.1, 0.2, 0.3], [1, 2])
