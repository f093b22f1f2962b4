"""The gate: whether the next round builds on this round's adapter.

A round is accepted when it trained without diverging, its held-out answers do not loop, its
target metric reaches the best so far plus the margin, and it lost no more general capability
and gained no more bias than the config allows. Checks run in that order and the first failure is
the reason; a check whose figures were not measured (no audit configured) is left out.
"""

from __future__ import annotations

from typing import Any

from loop.config import GateConfig


def _mean(figures: dict[str, Any], arm: str, name: str) -> float | None:
    value = figures.get(arm, {}).get(name)
    return value["mean"] if isinstance(value, dict) else value


def decide(
    cfg: GateConfig,
    target: str,
    train: dict[str, Any],
    figures: dict[str, Any],  # the round's eval figures: arm -> metric -> estimate
    best: float,
) -> tuple[str, str]:
    """(status, reason): status is accepted, rejected or skipped."""
    if not train.get("trained"):
        why = train.get("reason", "nothing to train on")
        return "skipped", f"{why}; the previous adapter stays"
    if train.get("diverged"):
        return "rejected", "training loss was not finite; the previous adapter stays"
    loops = _mean(figures, "adapter", "degenerate") or 0.0
    if loops > cfg.max_loops:
        limit = f"gate.max_loops {cfg.max_loops:.0%}"
        return "rejected", f"{loops:.0%} of held-out answers loop ({limit})"
    value = _mean(figures, "adapter", target)
    if value is None:
        return "rejected", f"the adapter's {target} was not measured"
    if value < best + cfg.margin:
        return (
            "rejected",
            f"{target} {value:.3f} is below the best so far {best:.3f} "
            f"plus gate.margin {cfg.margin}",
        )
    regressions = _regressions(cfg, figures)
    if regressions:
        return "rejected", "; ".join(regressions)
    return "accepted", f"{target} {value:.3f} against the best so far {best:.3f}"


def _regressions(cfg: GateConfig, figures: dict[str, Any]) -> list[str]:
    """What the adapter lost against the base beyond the config's tolerances."""
    out = []
    mc_base, mc = _mean(figures, "base", "mc_accuracy"), _mean(figures, "adapter", "mc_accuracy")
    if mc_base is not None and mc is not None and mc_base - mc > cfg.max_mc_drop:
        out.append(
            f"multiple-choice accuracy fell {mc_base:.3f} -> {mc:.3f} "
            f"(gate.max_mc_drop {cfg.max_mc_drop})"
        )
    ppl_base, ppl = _mean(figures, "base", "perplexity"), _mean(figures, "adapter", "perplexity")
    if ppl_base and ppl is not None and ppl / ppl_base - 1 > cfg.max_perplexity_rise:
        out.append(
            f"general-text perplexity rose {ppl_base:.2f} -> {ppl:.2f} "
            f"(gate.max_perplexity_rise {cfg.max_perplexity_rise:.0%})"
        )
    bias_base, bias = _mean(figures, "base", "crows"), _mean(figures, "adapter", "crows")
    if bias_base is not None and bias is not None and bias - bias_base > cfg.max_bias_rise:
        out.append(
            f"CrowS-Pairs score rose {bias_base:.1f} -> {bias:.1f} "
            f"(gate.max_bias_rise {cfg.max_bias_rise} points)"
        )
    return out
