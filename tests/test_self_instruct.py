"""Self-Instruct: the list-continuation requests, parsing a continuation, and novelty screening."""

import random
from pathlib import Path

import pytest

from generators.pool import Prompt, load_prompts
from generators.self_instruct import Outcome, Request, parse_instruction, requests, screen


@pytest.mark.parametrize(
    ("continuation", "expected"),
    [
        (
            " Write a poem about the ocean at night.\n5. Name a fish.",
            "Write a poem about the ocean at night.",
        ),
        ("5. Explain how rainbows form in the sky.", "Explain how rainbows form in the sky."),
        ("4) What makes bread rise in the oven?", "What makes bread rise in the oven?"),
        (
            '"Describe your favourite childhood memory in detail."',
            "Describe your favourite childhood memory in detail.",
        ),
        ("“Suggest three names for a pet turtle!”", "Suggest three names for a pet turtle!"),
        ("Task 3: Summarise the plot of a famous novel.", "Summarise the plot of a famous novel."),
        (
            "New task: List three ways to save water at home.",
            "List three ways to save water at home.",
        ),
        ("- Plan a cheap weekend trip for two.", "Plan a cheap weekend trip for two."),
        (
            "Describe a sunny day at the beach.\nThen write another one about rain.",
            "Describe a sunny day at the beach.",
        ),
    ],
)
def test_parse_instruction_keeps_a_task(continuation: str, expected: str) -> None:
    assert parse_instruction(continuation) == expected


@pytest.mark.parametrize(
    "continuation",
    [
        "",
        "   \n  ",
        "Write a poem.",  # 3 words: too short
        "Write a poem about the ocean",  # no final punctuation
        "Hello there\nWrite a poem about the ocean at night.",  # only the first line counts
        " ".join(["word"] * 41) + ".",  # over 40 words
    ],
)
def test_parse_instruction_rejects(continuation: str) -> None:
    assert parse_instruction(continuation) is None


@pytest.fixture(scope="module")
def pools(seeds_file: Path, heldout_file: Path) -> tuple[list[Prompt], list[Prompt]]:
    return (
        load_prompts(seeds_file, "seed", "generate.seed_file"),
        load_prompts(heldout_file, "heldout", "eval.heldout_file"),
    )


def test_screen_rejects_unparseable(pools: tuple[list[Prompt], list[Prompt]]) -> None:
    pool, heldout = pools

    assert screen("si-r1-000", "Sure! Here", pool, heldout) == Outcome(None, "unparseable")


def test_screen_rejects_a_heldout_prompt(pools: tuple[list[Prompt], list[Prompt]]) -> None:
    pool, heldout = pools
    # heldout-01, with different case and punctuation
    text = "1. how can I become more patient, when stuck waiting in long lines!"

    assert screen("si-r1-000", text, pool, heldout) == Outcome(None, "matches a held-out prompt")


def test_screen_rejects_a_near_copy_of_the_pool(pools: tuple[list[Prompt], list[Prompt]]) -> None:
    pool, heldout = pools
    # seed-002 with "strangers" replaced by "new people": LCS 12 of 13 and 14 tokens,
    # ROUGE-L F1 = 2 * 12 / 27 = 0.89 > 0.7
    text = "Give me some tips for making small talk with new people at a party."

    outcome = screen("si-r1-000", text, pool, heldout)

    assert outcome == Outcome(None, "too close to seed-002 (ROUGE-L 0.89)")


def test_screen_keeps_a_novel_instruction(pools: tuple[list[Prompt], list[Prompt]]) -> None:
    pool, heldout = pools
    text = " Write a short poem about a lighthouse keeper who loves thunderstorms.\n5. Other."

    outcome = screen("si-r2-003", text, pool, heldout)

    assert outcome == Outcome(
        Prompt(
            "si-r2-003",
            "Write a short poem about a lighthouse keeper who loves thunderstorms.",
            "self-instruct",
        ),
        "kept",
    )


def test_requests_format_a_numbered_list_to_continue() -> None:
    pool = [Prompt("a", "Name a colour.\n\nGiven input that is not shown", "seed")]

    reqs = requests(pool, 2, shots=3, rng=random.Random(0), round_=4)

    # one pool entry: shots are capped at the pool size; only an instruction's first line shows
    text = "Tasks people ask an assistant to do:\n1. Name a colour.\n2."
    assert reqs == [Request("si-r4-000", text), Request("si-r4-001", text)]


def test_requests_sample_distinct_examples() -> None:
    pool = [Prompt(f"p{i}", f"Task number {i}.", "seed") for i in range(10)]

    reqs = requests(pool, 20, shots=3, rng=random.Random(1), round_=1)

    for r in reqs:
        lines = r.text.splitlines()
        assert lines[0] == "Tasks people ask an assistant to do:"
        assert [line[:3] for line in lines[1:]] == ["1. ", "2. ", "3. ", "4."]
        assert len(set(lines[1:4])) == 3
        assert {line[3:] for line in lines[1:4]} <= {p.instruction for p in pool}
    assert len({r.text for r in reqs}) > 1


def test_requests_are_deterministic_for_a_seeded_random(seeds_file: Path) -> None:
    pool = load_prompts(seeds_file, "seed", "generate.seed_file")

    first = requests(pool, 8, 3, random.Random(7), 2)
    again = requests(pool, 8, 3, random.Random(7), 2)
    other = requests(pool, 8, 3, random.Random(8), 2)

    assert first == again
    assert [r.id for r in first] == [f"si-r2-{k:03d}" for k in range(8)]
    assert [r.text for r in first] != [r.text for r in other]
