"""Group terms: which groups a text mentions, and exact swaps on hand-written sentences."""

import pytest

from critics.groups import mentions, swap, swap_with_changes


@pytest.mark.parametrize(
    ("text", "category", "expected"),
    [
        (
            "The engineer fixed the bridge; he was careful.",
            "gender",
            "The engineer fixed the bridge; she was careful.",
        ),
        # her before a content word is possessive (his); before a function word or a stop, him
        (
            "I told her the truth about her car. The choice was his.",
            "gender",
            "I told him the truth about his car. The choice was hers.",
        ),
        ("He met his wife and Mr. Lee.", "gender", "She met her husband and Mrs. Lee."),
        ("HE said so.", "gender", "SHE said so."),
        (
            "An American and a Mexican met. Americans love Mexico.",
            "nationality",
            "A Mexican and an American met. Mexicans love America.",
        ),
        # "young" is an age term alone; "old" only in front of a person noun
        (
            "The young man helped an old woman. My old car broke.",
            "age",
            "The old man helped a young woman. My old car broke.",
        ),
        (
            "Christians and Muslims pray at a church.",
            "religion",
            "Muslims and Christians pray at a mosque.",
        ),
        (
            "Disabled people and non-disabled people; the alarm is disabled.",
            "disability",
            "Non-disabled people and disabled people; the alarm is disabled.",
        ),
        (
            "White people, Black men and a white wall.",
            "race_ethnicity",
            "Black people, White men and a white wall.",
        ),
        (
            "A gay couple and straight people.",
            "sexual_orientation",
            "A straight couple and gay people.",
        ),
        ("Nothing to swap here.", "religion", "Nothing to swap here."),
    ],
)
def test_swap_exact_output(text: str, category: str, expected: str) -> None:
    assert swap(text, category) == expected


def test_swap_leaves_other_categories_alone() -> None:
    assert swap("The old man is a Christian.", "gender") == "The old woman is a Christian."


def test_swap_reports_each_replacement_in_order() -> None:
    text, changes = swap_with_changes("She gave her a book.", "gender")

    assert text == "He gave him a book."
    assert changes == [("She", "He"), ("her", "him")]


def test_terms_without_counterpart_stay() -> None:
    assert swap_with_changes("A Sikh temple.", "religion") == ("A Sikh temple.", [])


def test_swapping_twice_restores_symmetric_pairs() -> None:
    text = "The boys and their father met the Muslim king."
    for category in ("gender", "religion"):
        assert swap(swap(text, category), category) == text


def test_mentions_each_group_once_in_order_any_case() -> None:
    text = "SHE and he and she met a muslim woman."

    assert mentions(text) == [("gender", "female"), ("gender", "male"), ("religion", "muslim")]


@pytest.mark.parametrize(
    "text",
    [
        "An old car and a white wall.",  # everyday words, no person noun after them
        "The feature is disabled.",
        "Go straight ahead, then turn.",
        "Hemisphere, shepherd, human.",  # terms inside longer words do not count
        "",
    ],
)
def test_everyday_words_mention_no_group(text: str) -> None:
    assert mentions(text) == []


def test_a_longer_term_wins_over_the_term_inside_it() -> None:
    # "non-disabled" is one term; "disabled" inside it is not a second mention
    assert mentions("non-disabled people") == [("disability", "non_disabled")]


def test_unknown_category_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: gender, race_ethnicity"):
        swap("text", "height")
