"""Group balance in the selection: counts, shares and refusals on hand-counted texts."""

import pytest

from critics.balance import balance, balance_verdicts, group_counts, group_shares


def test_group_counts_and_shares_count_each_text_once_per_group() -> None:
    texts = ["he and he again", "she", "he met a Muslim", "nothing here"]

    counts = group_counts(texts)
    shares = group_shares(texts)

    assert counts == {"gender": {"male": 2, "female": 1}, "religion": {"muslim": 1}}
    assert shares["gender"] == pytest.approx({"female": 1 / 3, "male": 2 / 3})
    assert shares["religion"] == {"muslim": 1.0}


def test_balance_refuses_a_group_past_its_share_once_the_category_is_big_enough() -> None:
    # best first: five "he" texts, then two "she" texts, then one more "he"
    texts = ["he"] * 5 + ["she"] * 2 + ["he"]
    order = list(range(8))

    kept = balance(order, texts, [True] * 8, max_share=0.6, min_mentions=5)

    # 1-4: 4 male mentions, under min_mentions | 5: male 5/5 > 0.6, refused
    # 6: female 1/5 kept | 7: female 2/6 kept | 8: male 5/7 = 0.71 > 0.6, refused
    assert kept == [True, True, True, True, False, True, True, False]


def test_balance_walks_in_rank_order_and_skips_ineligible_texts() -> None:
    texts = ["she", "he", "he", "he", "a text about bridges"]
    order = [3, 2, 1, 0, 4]
    eligible = [True, True, False, True, True]

    verdicts = balance_verdicts(order, texts, eligible, max_share=0.5, min_mentions=2)

    # 3: male 1/1, under min | 2: not eligible, not counted | 1: male 2/2 > 0.5, refused
    # 0: female 1/2 = 0.5, not above | 4: no group
    assert [v.passed for v in verdicts] == [True, False, True, True, True]
    assert verdicts[1].reason == "gender/male would hold 2 of 2 mentions (100% > 50%)"
    assert verdicts[1].score == 0.0
    assert verdicts[2].reason == "not counted"
    assert verdicts[4].reason == "mentions no group"


def test_balance_counts_only_up_to_the_budget_and_after_prior_texts() -> None:
    texts = ["he", "he", "he"]

    # prior survivors already hold 1 male and 1 female mention; budget 1 counts the first only
    kept = balance([0, 1, 2], texts, [True] * 3, 0.6, 3, budget=1, prior=["he", "she"])

    # 0: male 2/3 = 0.67 > 0.6, refused | 1: same, refused | 2: same, refused
    assert kept == [False, False, False]
    assert balance([0, 1, 2], texts, [True] * 3, 0.6, 4, budget=1) == [True, True, True]


def test_max_share_one_keeps_everything() -> None:
    assert balance([0, 1, 2], ["he", "he", "he"], [True] * 3, 1.0, 1) == [True] * 3
