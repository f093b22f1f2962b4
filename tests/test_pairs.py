"""Preference pairs from hand-made candidate tables: which pair each prompt gives, or why none."""

import math

import pytest

from loop.pairs import REASONS, build_pairs


def cand(cid: str, pid: str, score: float | None, rejected_by: str = "", text: str = "") -> dict:
    return {
        "id": cid,
        "prompt_id": pid,
        "instruction": f"question {pid}",
        "response": text or f"answer {cid}",
        "combined_score": score,
        "survivor": rejected_by == "",
        "rejected_by": rejected_by,
    }


def no_pair(reason: str) -> dict[str, int]:
    return {r: int(r == reason) for r in REASONS}


def test_best_passing_against_worst_other() -> None:
    rows = [
        cand("a", "p1", 0.6),
        cand("b", "p1", 0.9, "budget"),  # passed every critic; only the budget cut it
        cand("c", "p1", 0.2, "judge"),
        cand("d", "p1", 0.4, "rules"),
    ]
    pairs, reasons = build_pairs(rows, margin=0.05)
    assert pairs == [
        {
            "prompt_id": "p1",
            "prompt": [{"role": "user", "content": "question p1"}],
            "chosen": [{"role": "assistant", "content": "answer b"}],
            "rejected": [{"role": "assistant", "content": "answer c"}],
            "chosen_id": "b",
            "rejected_id": "c",
            "chosen_score": 0.9,
            "rejected_score": 0.2,
            "margin": pytest.approx(0.7),
        }
    ]
    assert reasons == dict.fromkeys(REASONS, 0)


def test_a_lower_survivor_can_be_the_rejected_one() -> None:
    pairs, _ = build_pairs([cand("a", "p", 0.8), cand("b", "p", 0.5)], margin=0.05)
    assert (pairs[0]["chosen_id"], pairs[0]["rejected_id"]) == ("a", "b")
    assert pairs[0]["margin"] == pytest.approx(0.3)


def test_one_pair_per_prompt_in_order_of_first_appearance() -> None:
    rows = [
        cand("x1", "q2", 0.7),
        cand("y1", "q1", 0.9),
        cand("x2", "q2", 0.1, "rules"),
        cand("y2", "q1", 0.3, "rules"),
    ]
    pairs, _ = build_pairs(rows, margin=0.05)
    assert [(p["prompt_id"], p["chosen_id"], p["rejected_id"]) for p in pairs] == [
        ("q2", "x1", "x2"),
        ("q1", "y1", "y2"),
    ]


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([cand("a", "p", 0.9)], "one_sample"),
        ([cand("a", "p", 0.9, "rules"), cand("b", "p", 0.1, "judge")], "no_passing_chosen"),
        ([cand("a", "p", 0.5), cand("b", "p", 0.5, "rules")], "tie"),
        # 0.1 + 0.2 is 0.30000000000000004: still a tie with 0.3
        ([cand("a", "p", 0.1 + 0.2), cand("b", "p", 0.3, "rules")], "tie"),
        ([cand("a", "p", None), cand("b", "p", 0.1, "rules")], "missing_score"),
        ([cand("a", "p", math.nan), cand("b", "p", 0.1, "rules")], "missing_score"),
        ([cand("a", "p", 0.9), cand("b", "p", math.nan, "rules")], "missing_score"),
        (
            [
                cand("a", "p", 0.9, text="Ahoy  there!\n"),
                cand("b", "p", 0.1, "rules", text=" Ahoy there!"),
            ],
            "identical",
        ),
        ([cand("a", "p", 0.54), cand("b", "p", 0.5, "rules")], "below_margin"),
        # a failed candidate the critics scored higher than the chosen one
        ([cand("a", "p", 0.5), cand("b", "p", 0.8, "rules")], "below_margin"),
    ],
)
def test_no_pair_and_why(rows: list[dict], reason: str) -> None:
    assert build_pairs(rows, margin=0.05) == ([], no_pair(reason))


def test_margin_is_inclusive_despite_float_rounding() -> None:
    # 0.35 - 0.3 is 0.04999999999999999 in floats
    pairs, _ = build_pairs([cand("a", "p", 0.35), cand("b", "p", 0.3, "rules")], margin=0.05)
    assert [p["chosen_id"] for p in pairs] == ["a"]


def test_missing_scores_and_copies_are_skipped_when_another_candidate_remains() -> None:
    rows = [
        cand("a", "p", 0.9, text="same words"),
        cand("b", "p", None, "rules"),
        cand("c", "p", 0.0, "rules", text="same   words"),
        cand("d", "p", 0.4, "rules"),
    ]
    pairs, reasons = build_pairs(rows, margin=0.05)
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("a", "d")]
    assert reasons == dict.fromkeys(REASONS, 0)


def test_equal_best_scores_keep_the_first_candidate() -> None:
    rows = [cand("a", "p", 0.9), cand("b", "p", 0.9), cand("c", "p", 0.1, "rules")]
    pairs, _ = build_pairs(rows, margin=0.0)
    assert (pairs[0]["chosen_id"], pairs[0]["rejected_id"]) == ("a", "c")


def test_counts_over_a_mixed_table() -> None:
    rows = [
        cand("a", "single", 0.9),
        cand("b", "tied", 0.5),
        cand("c", "tied", 0.5, "dedup"),
        cand("d", "good", 0.9),
        cand("e", "good", 0.2, "rules"),
        cand("f", "close", 0.52),
        cand("g", "close", 0.50),
    ]
    pairs, reasons = build_pairs(rows, margin=0.05)
    assert [p["prompt_id"] for p in pairs] == ["good"]
    assert reasons == {
        "one_sample": 1,
        "no_passing_chosen": 0,
        "missing_score": 0,
        "identical": 0,
        "tie": 1,
        "below_margin": 1,
    }
