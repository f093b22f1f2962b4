"""Chat-template checks with the default model's real tokenizer, and with templates broken on
purpose to show each check fires."""

import pytest
from transformers import AutoTokenizer

from loop.chat_template import PROBLEMS, ChatTemplateError, check_examples, check_pairs


@pytest.fixture
def tokenizer(default_model_dir: str):  # noqa: ANN201 (a transformers tokenizer)
    return AutoTokenizer.from_pretrained(default_model_dir)  # fresh: tests edit its template


def example(cid: str, text: str) -> dict:
    return {
        "id": cid,
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "completion": [{"role": "assistant", "content": text}],
    }


def pair(pid: str, chosen: str, rejected: str) -> dict:
    return {
        "prompt_id": pid,
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def counts(**found: int) -> dict[str, int]:
    return {p: found.get(p, 0) for p in PROBLEMS}


def test_sound_rows_pass(tokenizer) -> None:  # noqa: ANN001
    rows = [example("a", "Blue, matey."), example("b", "Red.")]
    kept, report = check_examples(rows, tokenizer, max_length=64)
    assert kept == rows
    assert (report.checked, report.kept, report.problems) == (2, 2, counts())

    pairs = [pair("p", "Blue, matey.", "I cannot.")]
    kept, report = check_pairs(pairs, tokenizer, max_length=64)
    assert kept == pairs and report.problems == counts()


def test_end_of_turn_inside_the_response_is_a_second_eos(tokenizer) -> None:  # noqa: ANN001
    rows = [example("a", "Blue."), example("b", "Blue.<|im_end|>Red.")]
    kept, report = check_examples(rows, tokenizer, max_length=64)
    assert [r["id"] for r in kept] == ["a"]
    assert report.problems == counts(eos=1)
    assert report.offending["eos"] == ["b"]


def test_too_long_counts_the_whole_sequence(tokenizer) -> None:  # noqa: ANN001
    # The template's system turn, user turn and generation prompt are 34 tokens; "Blue." is 2,
    # then <|im_end|> and "\n": 38 in all.
    rows = [example("a", "Blue.")]
    assert check_examples(rows, tokenizer, max_length=38)[1].kept == 1
    with pytest.raises(ChatTemplateError, match="'too_long'.*raise train.max_length"):
        check_examples(rows, tokenizer, max_length=37)


def test_a_pair_fails_when_either_side_fails(tokenizer) -> None:  # noqa: ANN001
    pairs = [pair("ok", "Blue.", "Red."), pair("long", "Blue.", "Red. " * 40)]
    kept, report = check_pairs(pairs, tokenizer, max_length=64)
    assert [p["prompt_id"] for p in kept] == ["ok"]
    assert report.problems == counts(too_long=1)
    assert report.offending["too_long"] == ["long"]


def test_a_bos_on_top_of_the_template_fails_every_row(tokenizer) -> None:  # noqa: ANN001
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer.chat_template
    with pytest.raises(ChatTemplateError, match="all 2 SFT examples failed .* 'bos'"):
        check_examples([example("a", "Blue."), example("b", "Red.")], tokenizer, 64)


def test_a_generation_prompt_unlike_the_assistant_turn_fails(tokenizer) -> None:  # noqa: ANN001
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\n' }}", "{{ '<|im_start|>bot\n' }}"
    )
    with pytest.raises(ChatTemplateError, match="'prompt'"):
        check_pairs([pair("p", "Blue.", "Red.")], tokenizer, 64)


def test_a_template_without_end_of_turn_fails(tokenizer) -> None:  # noqa: ANN001
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "message['content'] + '<|im_end|>'", "message['content'] + ''"
    )
    with pytest.raises(ChatTemplateError, match="'eos'"):
        check_examples([example("a", "Blue.")], tokenizer, 64)


def test_no_rows_is_no_error(tokenizer) -> None:  # noqa: ANN001
    kept, report = check_pairs([], tokenizer, 64)
    assert kept == [] and (report.checked, report.kept) == (0, 0)
