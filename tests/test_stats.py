import numpy as np

from loop.stats import bootstrap_ci, estimate, fmt


def test_interval_brackets_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    small = rng.normal(0.5, 0.1, 20)
    large = rng.normal(0.5, 0.1, 2000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5


def test_constant_values_give_a_point_interval_and_empty_gives_nan():
    assert bootstrap_ci([0.25] * 10) == (0.25, 0.25)
    e = estimate([])
    assert e["n"] == 0 and np.isnan(e["mean"]) and np.isnan(e["lo"])


def test_estimate_is_deterministic_and_formats():
    a, b = estimate([1, 0, 1, 1]), estimate([1, 0, 1, 1])
    assert a == b and a["mean"] == 0.75
    assert fmt({"mean": 0.5, "lo": 0.25, "hi": 0.75}) == "0.500 [0.250, 0.750]"


def test_other_statistics():
    lo, hi = bootstrap_ci([1, 2, 3, 4, 100], stat=np.median)
    assert 1 <= lo <= hi <= 100
