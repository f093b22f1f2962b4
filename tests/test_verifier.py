"""The verifier: final answers read from hand-written responses to real GSM8K rows, number
formats, missing numbers, exact matching, and the critic's verdicts."""

from pathlib import Path

import pytest

from critics.base import Candidate, Verdict
from critics.verifier import VerifierCritic, check, reference_number, response_number
from generators.pool import Prompt, load_prompts


@pytest.fixture(scope="module")
def gsm8k(shared_data: Path) -> list[Prompt]:
    path = shared_data / "gsm8k_test.jsonl"
    return load_prompts(path, "seed", "generate.seed_file", "question", "answer", "0:3")


def test_a_correct_and_an_incorrect_gsm8k_answer(gsm8k: list[Prompt]) -> None:
    ducks, robe, _ = gsm8k
    assert ducks.instruction.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert ducks.reference.endswith("#### 18")

    right = "She has 16 - 3 - 4 = 9 eggs left and sells them at $2: 9 * 2 = 18. The answer is 18."
    # forgets that half of 2 bolts is 1 and adds 2 + 2
    wrong = "The white fiber is 2 bolts too, so 2 + 2 = 4 bolts in total. The answer is 4."

    assert check(right, ducks.reference, "numeric") == (True, "answer 18 matches the reference 18")
    assert check(wrong, robe.reference, "numeric") == (False, "answer 4 but the reference is 3")


def test_reference_number_is_the_one_after_the_marks(gsm8k: list[Prompt]) -> None:
    # the house row's working holds $130,000 and $200,000 before "#### 70000"
    assert [reference_number(p.reference) for p in gsm8k] == ["18", "3", "70000"]
    assert reference_number("about 12 or 13 apples") == "13"  # no "####": the last number


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Profit is $200,000 - $130,000 = $70,000. The answer is $70,000.", "70000"),
        ("So the answer is 1,234.5 dollars.", "1234.5"),
        # the stated answer wins over a later number
        ("The answer is 18. That is 9 eggs times 2.", "18"),
        # a model that corrects itself: the last statement counts
        ("The answer is 17. Wait, 9 * 2 = 18. The answer is 18.", "18"),
        ("#### 42", "42"),
        ("It is 16-3, which leaves 13", "13"),  # 16-3 is a subtraction, not -3
        ("The temperature fell to -5 degrees.", "-5"),
        ("Half of 2 is 1, so 2 + 1 = 3 bolts.", "3"),  # no statement: the last number
        ("I cannot work this out.", None),
    ],
)
def test_response_number(response: str, expected: str | None) -> None:
    assert response_number(response) == expected


@pytest.mark.parametrize(
    ("response", "reference", "checker", "expected"),
    [
        # commas and dollar signs are dropped before comparing as numbers
        (
            "The answer is $70,000.",
            "#### 70000",
            "numeric",
            "answer 70000 matches the reference 70000",
        ),
        (
            "The answer is 70000.00",
            "#### $70,000",
            "numeric",
            "answer 70000.00 matches the reference 70000",
        ),
        ("The answer is 7,000.", "#### 70000", "numeric", "answer 7000 but the reference is 70000"),
        ("I do not know.", "#### 18", "numeric", "no number in the response"),
        ("The answer is 18.", "", "numeric", "no reference answer"),
        ("The answer is 18.", "eighteen", "numeric", "no number in the reference answer"),
        ("  Paris!", "paris", "exact", "answer 'paris' matches the reference"),
        ("Rome.", "Paris", "exact", "answer 'rome' but the reference is 'paris'"),
        ("Paris", "", "exact", "no reference answer"),
    ],
)
def test_check_reasons(response: str, reference: str, checker: str, expected: str) -> None:
    assert check(response, reference, checker) == (" matches " in expected, expected)


def test_verifier_critic_verdicts() -> None:
    def candidate(response: str, reference: str) -> Candidate:
        return Candidate("c", "p", "seed", "Q?", response, 9, True, reference=reference)

    critic = VerifierCritic("maths", "numeric", threshold=0.5)

    verdicts = critic.score(
        [
            candidate("The answer is 18.", "#### 18"),
            candidate("The answer is 17.", "#### 18"),
            candidate("No idea.", "#### 18"),
            candidate("The answer is 18.", ""),  # a self-written instruction has no reference
        ]
    )

    assert verdicts == [
        Verdict(1.0, True, "answer 18 matches the reference 18"),
        Verdict(0.0, False, "answer 17 but the reference is 18"),
        Verdict(0.0, False, "no number in the response"),
        Verdict(0.0, False, "no reference answer"),
    ]
