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


def test_a_file_that_is_not_utf8_names_the_key_file_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{"instruction": "Fine."}\n{"instruction": "caf\xe9"}\n')

    with pytest.raises(ConfigError) as info:
        load_prompts(path, "heldout", "eval.heldout_file")

    assert str(info.value) == (
        f"'eval.heldout_file': {path} is not UTF-8 text (byte 45); save it as UTF-8"
    )


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


def test_gsm8k_rows_load_with_their_reference_answers(shared_data: Path) -> None:
    path = shared_data / "gsm8k_test.jsonl"

    pool = load_prompts(path, "heldout", "eval.heldout_file", "question", "answer", "1:3")

    # line numbers name the rows, so slices of one file never share an id
    assert [p.id for p in pool] == ["heldout-0002", "heldout-0003"]
    assert pool[0].instruction == (
        "A robe takes 2 bolts of blue fiber and half that much white fiber.  "
        "How many bolts in total does it take?"
    )
    assert pool[0].reference.endswith(
        "So the total amount of fabric is 2+1=<<2+1=3>>3 bolts of fabric\n#### 3"
    )
    assert pool[1].reference.endswith("#### 70000")


def test_rows_slice_counts_non_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"q": "One?", "a": 1}\n\n{"q": "Two?", "a": "2"}\n{"q": "Three?", "a": "3"}\n')

    head = load_prompts(path, "seed", "generate.seed_file", "q", "a", ":2")
    tail = load_prompts(path, "seed", "generate.seed_file", "q", "a", "2:")

    assert head == [
        Prompt("seed-0001", "One?", "seed", "1"),
        Prompt("seed-0003", "Two?", "seed", "2"),
    ]
    assert tail == [Prompt("seed-0004", "Three?", "seed", "3")]
    # no reference field: no reference
    assert load_prompts(path, "seed", "generate.seed_file", "q")[0].reference == ""


def test_rows_past_the_end_name_the_key_and_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text('{"instruction": "One."}\n{"instruction": "Two."}\n')

    for rows in ("1:5", "2:"):
        with pytest.raises(ConfigError, match=rf"'eval.rows' = '{rows}' but .* holds 2 rows"):
            load_prompts(path, "heldout", "eval.heldout_file", rows=rows)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"instruction": "Q?"}', r"the 'question' field .* \(or set generate.instruction_field\)"),
        ('{"question": "Q?"}', r"the 'answer' field .* \(generate.reference_field\)"),
        ('{"question": "Q?", "answer": true}', r"the 'answer' field holding non-empty text"),
    ],
)
def test_missing_named_fields_say_which_key_to_set(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(line + "\n")

    with pytest.raises(ConfigError, match=rf"pool\.jsonl:1: .*{message}"):
        load_prompts(path, "seed", "generate.seed_file", "question", "answer")


def test_a_repeated_id_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(
        '{"id": "a", "instruction": "First task."}\n{"id": "b", "instruction": "Second."}\n'
        '{"id": "a", "instruction": "Third task."}\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigError, match=r"pool\.jsonl:3 repeats the id 'a' of line 1"):
        load_prompts(path, "heldout", "eval.heldout_file")
