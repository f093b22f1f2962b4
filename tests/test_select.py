"""Selection: weighted combination, first-failure attribution, the budget and the funnel."""

import numpy as np
import pytest

from critics.base import Verdict
from critics.select import Decision, combined_scores, decide, funnel, mmr, ranking


def v(score: float, passed: bool = True) -> Verdict:
    return Verdict(score, passed, "")


def test_combined_scores_weighted_mean() -> None:
    verdicts = {
        "rules": [v(1.0), v(0.0, False)],
        "quality": [v(0.8), v(0.2)],
        "persona": [v(0.6), v(0.4)],
    }
    weights = {"rules": 0.0, "quality": 1.0, "persona": 3.0}

    combined = combined_scores(verdicts, weights, 2)

    # (1 * 0.8 + 3 * 0.6) / 4 and (1 * 0.2 + 3 * 0.4) / 4; rules has weight 0
    assert combined == pytest.approx([0.65, 0.35])


def test_combined_scores_ignore_weights_of_critics_without_verdicts() -> None:
    verdicts = {"quality": [v(0.5), v(1.0)]}

    # dedup has a weight but no verdicts yet: the mean is over quality alone
    assert combined_scores(verdicts, {"quality": 2.0, "dedup": 5.0}, 2) == pytest.approx([0.5, 1.0])


def test_combined_scores_without_weight_are_zero() -> None:
    verdicts = {"rules": [v(1.0), v(1.0), v(0.0)]}

    assert combined_scores(verdicts, {"rules": 0.0}, 3) == [0.0, 0.0, 0.0]


def test_ranking_is_best_first_and_ties_keep_input_order() -> None:
    assert ranking([0.2, 0.9, 0.5, 0.9, 0.2]) == [1, 3, 2, 0, 4]


def test_decide_charges_the_first_failing_critic_in_critic_order() -> None:
    # candidate 0 fails quality and dedup, candidate 1 fails rules and quality,
    # candidate 2 fails dedup only, candidate 3 passes everything
    verdicts = {
        "rules": [v(1.0), v(0.0, False), v(1.0), v(1.0)],
        "quality": [v(0.1, False), v(0.1, False), v(0.9), v(0.8)],
        "dedup": [v(0.0, False), v(1.0), v(0.0, False), v(1.0)],
    }
    combined = [0.1, 0.1, 0.9, 0.8]

    decisions = decide(verdicts, combined, budget=10)

    assert decisions == [
        Decision(0.1, False, "quality"),
        Decision(0.1, False, "rules"),
        Decision(0.9, False, "dedup"),
        Decision(0.8, True, ""),
    ]


def test_decide_budget_keeps_the_best_and_ties_in_input_order() -> None:
    verdicts = {"quality": [v(0.5), v(0.9), v(0.7), v(0.9), v(0.2, False), v(0.7)]}
    combined = [0.5, 0.9, 0.7, 0.9, 0.95, 0.7]

    decisions = decide(verdicts, combined, budget=3)

    # ranked: 4 (fails, takes no budget), 1, 3, 2 | 5 (tie with 2, comes later), 0
    assert decisions == [
        Decision(0.5, False, "budget"),
        Decision(0.9, True, ""),
        Decision(0.7, True, ""),
        Decision(0.9, True, ""),
        Decision(0.95, False, "quality"),
        Decision(0.7, False, "budget"),
    ]


def test_decide_on_no_candidates() -> None:
    assert decide({"quality": []}, [], budget=3) == []


# Four passing candidates: b points the same way as a, c and d are orthogonal to a and each other.
E = np.eye(3, dtype=np.float32)
SCORES = [0.9, 0.85, 0.6, 0.5]
VECTORS = np.stack([E[0], E[0], E[1], E[2]])
PASSING = {"quality": [v(s) for s in SCORES]}


def test_mmr_trades_a_copy_for_an_orthogonal_candidate() -> None:
    # a first; then gains at diversity 0.3 are b 0.7*0.85 - 0.3*1 = 0.295, c 0.7*0.6 = 0.42,
    # d 0.7*0.5 = 0.35: c; then d 0.35 beats b 0.295 (d is orthogonal to both a and c)
    assert mmr([0, 1, 2, 3], SCORES, VECTORS, 3, 0.3) == [0, 2, 3]
    # at diversity 0.1 b keeps its place: 0.9*0.85 - 0.1 = 0.665 > 0.9*0.6 = 0.54
    assert mmr([0, 1, 2, 3], SCORES, VECTORS, 3, 0.1) == [0, 1, 2]


def test_decide_mmr_and_top_keep_different_sets_within_the_budget() -> None:
    top = decide(PASSING, SCORES, budget=2, strategy="top")
    diverse = decide(PASSING, SCORES, budget=2, strategy="mmr", diversity=0.3, vectors=VECTORS)

    assert [d.survivor for d in top] == [True, True, False, False]
    assert diverse == [
        Decision(0.9, True, ""),
        Decision(0.85, False, "budget"),
        Decision(0.6, True, ""),
        Decision(0.5, False, "budget"),
    ]


def test_decide_mmr_skips_failures_and_charges_their_critic() -> None:
    verdicts = {"quality": [v(0.9), v(0.85), v(0.95, False), v(0.6), v(0.5)]}
    combined = [0.9, 0.85, 0.95, 0.6, 0.5]
    # the failing candidate 2 points like c: it must not push c out
    vectors = np.stack([E[0], E[0], E[1], E[1], E[2]])

    decisions = decide(verdicts, combined, 2, strategy="mmr", diversity=0.3, vectors=vectors)

    assert [d.rejected_by for d in decisions] == ["", "budget", "quality", "", "budget"]


def test_mmr_without_diversity_is_the_top_scores() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    combined = [float(s) for s in rng.choice([0.1, 0.4, 0.5, 0.9], size=40)]  # many ties
    passed = rng.random(40) < 0.7
    verdicts = {"quality": [v(s, bool(p)) for s, p in zip(combined, passed, strict=True)]}

    for budget in (1, 5, 17, 40):
        assert decide(
            verdicts, combined, budget, strategy="mmr", diversity=0.0, vectors=vectors
        ) == decide(verdicts, combined, budget, strategy="top")


def test_mmr_under_budget_keeps_every_passing_candidate() -> None:
    decisions = decide(PASSING, SCORES, budget=10, strategy="mmr", diversity=1.0, vectors=VECTORS)

    assert all(d.survivor for d in decisions)


def test_mmr_without_vectors_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="one embedding per candidate"):
        decide(PASSING, SCORES, budget=2, strategy="mmr")
    with pytest.raises(ValueError, match="within 0..1"):
        mmr([0, 1], SCORES, VECTORS, 1, 1.5)


def test_funnel_counts_in_pipeline_order() -> None:
    decisions = [
        Decision(0.1, False, "rules"),
        Decision(0.2, False, "quality"),
        Decision(0.3, False, "rules"),
        Decision(0.9, True, ""),
        Decision(0.5, False, "budget"),
        Decision(0.8, True, ""),
    ]

    steps = funnel(decisions, ["rules", "quality", "dedup"])

    assert steps == {
        "generated": 6,
        "rules": 2,
        "quality": 1,
        "dedup": 0,
        "budget": 1,
        "survivors": 2,
    }
    assert list(steps) == ["generated", "rules", "quality", "dedup", "budget", "survivors"]
    assert steps["generated"] == sum(v for k, v in steps.items() if k != "generated")
