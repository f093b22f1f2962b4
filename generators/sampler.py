"""The generator: the current policy writing instructions and sampling responses.

Ray wraps this class into generator actors; tests call it directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from critics.base import Candidate
from generators.pool import Prompt
from generators.self_instruct import Request
from loop.policy import Conversation, Generation, Policy

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def trim_to_sentence(text: str) -> str | None:
    """`text` up to its last complete sentence; None if it holds no complete sentence."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else None


def persona_conversation(instruction: str, system_prompt: str | None) -> Conversation:
    turns = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*turns, {"role": "user", "content": instruction}]


class Generator:
    def __init__(
        self,
        model_path: str,
        dtype: str,
        threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.policy = Policy(model_path, dtype, threads, trust_remote_code)

    def set_adapter(self, path: str | None) -> None:
        self.policy.set_adapter(path)

    def write_instructions(
        self,
        reqs: Sequence[Request],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        batch_size: int,
    ) -> list[str]:
        gens = self.policy.generate(
            [r.text for r in reqs], max_new_tokens, temperature, top_p, seed, batch_size
        )
        return [g.text for g in gens]

    def respond(
        self,
        prompts: Sequence[Prompt],
        system_prompt: str | None,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        batch_size: int,
        round_: int,
        trim: bool = True,
    ) -> list[Candidate]:
        """`n` sampled responses per prompt, as candidates. With `trim`, a response cut off by
        the token limit is trimmed back to its last complete sentence (and marked so)."""
        jobs = [(p, j) for p in prompts for j in range(n)]
        convs = [persona_conversation(p.instruction, system_prompt) for p, _ in jobs]
        gens = self.policy.generate(convs, max_new_tokens, temperature, top_p, seed, batch_size)
        out = []
        for (p, j), g in zip(jobs, gens, strict=True):
            trimmed = None if g.finished or not trim else trim_to_sentence(g.text)
            out.append(
                Candidate(
                    id=f"r{round_}:{p.id}:s{j}",
                    prompt_id=p.id,
                    source=p.source,
                    instruction=p.instruction,
                    response=trimmed or g.text,
                    tokens=g.tokens,
                    finished=g.finished,
                    trimmed=trimmed is not None,
                )
            )
        return out

    def answer(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        batch_size: int,
        system_prompt: str | None = None,
    ) -> list[Generation]:
        """Greedy answers, for evaluation."""
        convs = [persona_conversation(p.instruction, system_prompt) for p in prompts]
        return self.policy.generate(convs, max_new_tokens, 0.0, 1.0, 0, batch_size)
