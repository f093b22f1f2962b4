"""Instruction pools: the shipped seed and held-out files, other JSONL pools, and bad files."""

from pathlib import Path

import pytest

from generators.pool import Prompt, check_split, load_prompts, normalise
from loop.errors import ConfigError


def test_project_seeds_load(seeds_file: Path) -> None:
    seeds = load_prompts(seeds_file, "seed", "generate.seed_file")

    assert len(seeds) >= 60
    assert all(p.source == "seed" for p in seeds)
    assert all(p.instruction.strip() for p in seeds)
    assert seeds[0] == Prompt(
        "seed-001",
        "How can I stop hitting the snooze button every morning and actually get up on time?",
        "seed",
    )
    assert len({p.id for p in seeds}) == len(seeds)


def test_heldout_loads_and_never_overlaps_the_seeds(seeds_file: Path, heldout_file: Path) -> None:
    seeds = load_prompts(seeds_file, "seed", "generate.seed_file")
    heldout = load_prompts(heldout_file, "heldout", "eval.heldout_file")

    assert len(heldout) == 32
    assert heldout[0].id == "heldout-01"
    check_split(seeds, heldout)  # raises on a leak
    assert {normalise(p.instruction) for p in seeds}.isdisjoint(
        {normalise(p.instruction) for p in heldout}
    )


def test_self_instruct_seed_tasks_load_as_a_pool(shared_data: Path) -> None:
    path = shared_data / "self_instruct_seed_tasks.jsonl"

    pool = load_prompts(path, "seed", "generate.seed_file")

    assert len(pool) == 175
    assert pool[0].id == "seed_task_0"
    # An instance's input is folded into the instruction after a blank line.
    assert pool[1].instruction == (
        "What is the relation between the given pairs?\n\nNight : Day :: Right : Left"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I  boil an Egg?", "how do i boil an egg"),
        ("  Tell me... a JOKE!! ", "tell me a joke"),
        ("It's fine", "it s fine"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_ids_default_to_source_and_line_number(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(
        '{"instruction": "First task."}\n\n{"id": "mine", "instruction": "Second task."}\n'
        '{"instruction": "Third task."}\n',
        encoding="utf-8",
    )

    prompts = load_prompts(path, "seed", "generate.seed_file")

    assert [p.id for p in prompts] == ["seed-0001", "mine", "seed-0004"]


def test_bad_json_line_names_the_line_number(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"instruction": "Fine."}\n{"instruction": "broken"\n', encoding="utf-8")

    with pytest.raises(ConfigError, match=r"pool\.jsonl:2: not valid JSON"):
        load_prompts(path, "seed", "generate.seed_file")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "no instruction here"}', "the 'instruction' field holding non-empty text"),
        ('{"instruction": "   "}', "the 'instruction' field holding non-empty text"),
        ('{"instruction": 42}', "the 'instruction' field holding non-empty text"),
        ('["a", "list"]', "one JSON object per line is needed, not an array"),
    ],
)
def test_line_without_instruction_names_the_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(f'{{"instruction": "Fine."}}\n{{"instruction": "Also fine."}}\n{line}\n')

    with pytest.raises(ConfigError, match=rf"pool\.jsonl:3: .*{message}"):
        load_prompts(path, "seed", "generate.seed_file")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_names_the_key(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=r"'generate\.seed_file': .* holds no instructions"):
        load_prompts(path, "seed", "generate.seed_file")


def test_check_split_raises_on_a_leak() -> None:
    seeds = [
        Prompt("s1", "Tell me a joke.", "seed"),
        Prompt("s2", "How do I boil an egg?", "seed"),
    ]
    heldout = [Prompt("h1", "how do I boil an EGG", "heldout")]

    with pytest.raises(ConfigError, match=r"1 seed instructions also appear .*\(s2\)"):
        check_split(seeds, heldout)


def test_null_instance_input_counts_as_no_input(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"instruction": "Fix this.", "instances": [{"input": null}]}\n')

    prompts = load_prompts(path, "seed", "generate.seed_file")

    assert prompts == [Prompt("seed-0001", "Fix this.", "seed")]
