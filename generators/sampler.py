"""The generator: the current policy writing instructions and sampling responses.

Ray wraps this class into generator actors; tests call it directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    batch_size: int = 32


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int
    finished: bool
    prompt_tokens: int  # the request's length after the chat template
    seconds: float  # generation time per request in its batch


class Generator:
    """Every call names the adapter it wants: a restarted actor (base weights only) then
    serves a retried task with the right policy instead of silently with the base model."""

    def __init__(
        self,
        model_path: str,
        dtype: str,
        threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.policy = Policy(model_path, dtype, threads, trust_remote_code)

    def _generate(
        self, prompts: Sequence[Conversation | str], s: Sampling, seed: int, adapter: str | None
    ) -> list[Generation]:
        self.policy.set_adapter(adapter)
        return self.policy.generate(
            prompts, s.max_new_tokens, s.temperature, s.top_p, seed, s.batch_size
        )

    def write_instructions(
        self, reqs: Sequence[Request], s: Sampling, seed: int, adapter: str | None
    ) -> list[str]:
        return [g.text for g in self._generate([r.text for r in reqs], s, seed, adapter)]

    def respond(
        self,
        prompts: Sequence[Prompt],
        system_prompt: str | None,
        n: int,
        s: Sampling,
        seed: int,
        adapter: str | None,
        round_: int,
        trim: bool = True,
    ) -> list[Candidate]:
        """`n` sampled responses per prompt, as candidates. With `trim`, a response cut off by
        the token limit is trimmed back to its last complete sentence (and marked so)."""
        jobs = [(p, j) for p in prompts for j in range(n)]
        convs = [persona_conversation(p.instruction, system_prompt) for p, _ in jobs]
        out = []
        for (p, j), g in zip(jobs, self._generate(convs, s, seed, adapter), strict=True):
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
                    reference=p.reference,
                )
            )
        return out

    def answer(
        self,
        prompts: Sequence[Prompt],
        s: Sampling,
        adapter: str | None,
        system_prompt: str | None = None,
    ) -> list[Answer]:
        """Greedy answers for evaluation, without a system prompt unless one is given (the
        prompt-engineering arm), each with what it cost."""
        convs = [persona_conversation(p.instruction, system_prompt) for p in prompts]
        greedy = Sampling(s.max_new_tokens, batch_size=s.batch_size)
        started = time.perf_counter()
        generations = self._generate(convs, greedy, 0, adapter)
        per_request = (time.perf_counter() - started) / max(len(prompts), 1)
        return [
            Answer(g.text, g.tokens, g.finished, self.policy.prompt_tokens(c), per_request)
            for g, c in zip(generations, convs, strict=True)
        ]
