"""Checks that training rows tokenize through the chat template the way TRL will train on them.

TRL tokenizes a conversational row as `apply_chat_template(prompt, add_generation_prompt=True)`
and `apply_chat_template(prompt + completion)` and trains on what follows the common prefix. A
row is kept only if that sequence is sound:

- bos: no second BOS in front of the template's first one. SmolLM2's BOS is `<|im_start|>`,
  which opens every turn, so counting BOS tokens says nothing; what goes wrong is a tokenizer or
  template that prepends its own BOS on top of the template's, giving two in a row at the start.
- eos: exactly one end-of-turn token in the completion, followed by whitespace at most (SmolLM2's
  template ends a turn with `<|im_end|>\\n`). A response that contains the end-of-turn text, or a
  template that drops it, fails.
- prompt: the tokenized prompt is a prefix of prompt+completion (for a pair: of both sequences),
  so the completion starts where generation starts and chosen and rejected share their prompt.
- too_long: the whole sequence fits in max_length, so truncation cuts nothing away.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from loop.errors import UserError

log = logging.getLogger(__name__)

PROBLEMS = ("bos", "eos", "prompt", "too_long")


class ChatTemplateError(UserError):
    """Every training row failed a check: the model's chat template or tokenizer is at fault."""


@dataclass(frozen=True)
class TemplateReport:
    checked: int
    kept: int
    problems: dict[str, int]  # problem -> rows that have it (a row may have several)
    offending: dict[str, list[str]]  # problem -> ids of those rows


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation: bool = False) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation
    )
    return list(out["input_ids"])


def _sequence_problems(
    tokenizer: Any, prompt_ids: list[int], full: list[int], max_length: int, ends: Collection[int]
) -> set[str]:
    problems = set()
    bos = tokenizer.bos_token_id
    if bos is not None and full[:2] == [bos, bos]:
        problems.add("bos")
    if full[: len(prompt_ids)] != prompt_ids:
        problems.add("prompt")
    completion = full[len(prompt_ids) :]
    at = [i for i, t in enumerate(completion) if t in ends]
    tail = tokenizer.decode(completion[at[-1] + 1 :]) if at else ""
    if len(at) != 1 or tail.strip():
        problems.add("eos")
    if len(full) > max_length:
        problems.add("too_long")
    return problems


def _row_problems(
    tokenizer: Any, row: dict[str, Any], completions: Sequence[str], max_length: int, ends: set
) -> set[str]:
    prompt_ids = _ids(tokenizer, row["prompt"], generation=True)
    problems: set[str] = set()
    for key in completions:
        full = _ids(tokenizer, row["prompt"] + row[key])
        problems |= _sequence_problems(tokenizer, prompt_ids, full, max_length, ends)
    return problems


def _row_id(row: dict[str, Any], index: int) -> str:
    found = (row.get(k) for k in ("id", "prompt_id"))
    return str(next((x for x in found if x is not None), index))


def _check(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    completions: Sequence[str],
    what: str,
    end_ids: Collection[int] | None,
) -> tuple[list[dict[str, Any]], TemplateReport]:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"the tokenizer has no chat template, so {what} cannot be tokenized as conversations; "
            "use a chat (instruct) model"
        )
    ends = set(end_ids or ()) | {tokenizer.eos_token_id}
    kept, problems, offending = [], dict.fromkeys(PROBLEMS, 0), {p: [] for p in PROBLEMS}
    for i, row in enumerate(rows):
        found = _row_problems(tokenizer, row, completions, max_length, ends)
        for p in found:
            problems[p] += 1
            offending[p].append(_row_id(row, i))
        if not found:
            kept.append(row)
    report = TemplateReport(len(rows), len(kept), problems, offending)
    _log_or_raise(report, what)
    return kept, report


def _log_or_raise(report: TemplateReport, what: str) -> None:
    """Warn about dropped rows; raise when none is left, since then the template is at fault."""
    if report.kept or not report.checked:
        if report.kept < report.checked:
            log.warning(
                "chat template | dropped %d of %d %s | %s",
                report.checked - report.kept,
                report.checked,
                what,
                " ".join(f"{p}:{len(ids)} {ids[:5]}" for p, ids in report.offending.items() if ids),
            )
        return
    worst = max(PROBLEMS, key=lambda p: report.problems[p])
    fixes = {
        "bos": "the template and the tokenizer both add a BOS token",
        "eos": "the completion does not end with exactly one end-of-turn token",
        "prompt": "the prompt rendered alone is not a prefix of prompt + completion",
    }
    if worst == "too_long":
        fix = "every one is longer than train.max_length; raise train.max_length"
    else:
        fix = f"{fixes[worst]}; fix the model's chat template or choose another model"
    raise ChatTemplateError(
        f"all {report.checked} {what} failed the chat-template check '{worst}': {fix}"
    )


def check_examples(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    end_ids: Collection[int] | None = None,
) -> tuple[list[dict[str, Any]], TemplateReport]:
    """The SFT rows (prompt, completion) that pass every check, and the report."""
    return _check(rows, tokenizer, max_length, ("completion",), "SFT examples", end_ids)


def check_pairs(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    end_ids: Collection[int] | None = None,
) -> tuple[list[dict[str, Any]], TemplateReport]:
    """The preference rows (prompt, chosen, rejected) that pass every check, and the report."""
    return _check(rows, tokenizer, max_length, ("chosen", "rejected"), "preference pairs", end_ids)
