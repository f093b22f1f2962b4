"""New instructions written by the model itself from a few pool examples, as in Self-Instruct.

The model continues a numbered list of sampled instructions as plain text (no chat template:
a 135M chat model asked in a chat turn for "a new task" mostly talks about tasks, while as a
list continuation it writes one). Its continuation is
parsed to a single instruction; answers that do not parse, repeat the pool (ROUGE-L above the
novelty threshold, 0.7 in Self-Instruct) or hit a held-out prompt are dropped and counted.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rouge_score import rouge_scorer

from generators.pool import Prompt, normalise

NOVELTY_ROUGE_L = 0.7
_ROUGE = rouge_scorer.RougeScorer(["rougeL"])


@dataclass(frozen=True)
class Request:
    id: str  # becomes the new prompt's id
    text: str  # a numbered list that the model continues


def requests(
    pool: Sequence[Prompt], n: int, shots: int, rng: random.Random, round_: int
) -> list[Request]:
    out = []
    for k in range(n):
        examples = rng.sample(list(pool), min(shots, len(pool)))
        listing = "".join(
            f"{j + 1}. {p.instruction.splitlines()[0]}\n" for j, p in enumerate(examples)
        )
        text = f"Tasks people ask an assistant to do:\n{listing}{len(examples) + 1}."
        out.append(Request(f"si-r{round_}-{k:03d}", text))
    return out


def parse_instruction(text: str) -> str | None:
    """The continuation's first line if it reads like a task (numbering, labels and quotes
    removed); None otherwise."""
    for line in text.strip().splitlines()[:1]:
        line = re.sub(r"^\s*(\d+[.)]|[-*•]|task\s*\d*\s*:|new task\s*:)\s*", "", line, flags=re.I)
        line = line.strip().strip("\"“”'").strip()
        n_words = len(line.split())
        if 4 <= n_words <= 40 and line[-1:] in ".?!":
            return line
    return None


@dataclass(frozen=True)
class Outcome:
    prompt: Prompt | None
    reason: str  # why it was dropped, or "kept"


def screen(
    request_id: str, text: str, pool: Sequence[Prompt], heldout: Sequence[Prompt]
) -> Outcome:
    instruction = parse_instruction(text)
    if instruction is None:
        return Outcome(None, "unparseable")
    held = {normalise(p.instruction) for p in heldout}
    if normalise(instruction) in held:
        return Outcome(None, "matches a held-out prompt")
    for other in [*pool, *heldout]:
        overlap = _ROUGE.score(other.instruction, instruction)["rougeL"].fmeasure
        if overlap > NOVELTY_ROUGE_L:
            return Outcome(None, f"too close to {other.id} (ROUGE-L {overlap:.2f})")
    return Outcome(Prompt(request_id, instruction, "self-instruct"), "kept")
