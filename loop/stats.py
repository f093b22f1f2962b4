"""Confidence intervals for every reported figure: the percentile bootstrap.

Held-out sets here are small (tens of prompts), so a figure without an interval says little. The
bootstrap resamples the per-item values with replacement; paired comparisons resample the
per-item differences, so the item-to-item variation that both arms share cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RESAMPLES = 2000


def bootstrap_ci(
    values: Sequence[float],
    stat: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """The `level` percentile interval of `stat` over resamples of `values`; (nan, nan) if empty."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))  # (resamples, n)
    if stat is np.mean:
        stats = data[picks].mean(axis=1)  # vectorised: the common case
    else:
        stats = np.array([stat(data[row]) for row in picks])
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def estimate(values: Sequence[float], seed: int = 0) -> dict[str, float]:
    """The mean with its 95% bootstrap interval, as stored in metrics: {mean, lo, hi, n}."""
    data = np.asarray(values, dtype=np.float64)
    lo, hi = bootstrap_ci(data, seed=seed)
    mean = float(data.mean()) if data.size else float("nan")
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(data.size)}


def fmt(e: dict[str, float], digits: int = 3) -> str:
    """'0.412 [0.301, 0.520]' for an estimate."""
    return f"{e['mean']:.{digits}f} [{e['lo']:.{digits}f}, {e['hi']:.{digits}f}]"
