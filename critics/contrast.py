"""Persona contrast: is a response more likely with the persona's system prompt than without?

The current policy scores each response twice, as the reply to the instruction with and without
the persona prompt. The mean per-token log-ratio is positive when the prompt made the response
likelier, that is, when the response carries what the prompt asked for. A 135M judge asked
"is this in persona?" barely separates in-persona answers; this ratio needs no rubric at all.
The score is sigmoid(scale * log-ratio), so 0.5 means "no more likely either way".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from critics.base import Candidate, Verdict
from loop.policy import Policy


def log_ratios(policy: Policy, system_prompt: str, candidates: Sequence[Candidate]) -> list[float]:
    """Mean per-token log p(response | system + instruction) - log p(response | instruction)."""
    texts = [c.response for c in candidates]
    with_prompt = policy.completion_logprobs(
        [
            [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": c.instruction},
            ]
            for c in candidates
        ],
        texts,
    )
    without = policy.completion_logprobs(
        [[{"role": "user", "content": c.instruction}] for c in candidates], texts
    )
    return [(a - b) / max(n, 1) for (a, n), (b, _) in zip(with_prompt, without, strict=True)]


class ContrastCritic:
    def __init__(
        self, name: str, system_prompt: str, scale: float, threshold: float, policy: Policy
    ) -> None:
        self.name = name
        self.system_prompt = system_prompt
        self.scale = scale
        self.threshold = threshold
        self.policy = policy

    def score(self, candidates: Sequence[Candidate]) -> list[Verdict]:
        verdicts = []
        for ratio in log_ratios(self.policy, self.system_prompt, candidates):
            s = 1.0 / (1.0 + math.exp(-self.scale * ratio))
            verdicts.append(
                Verdict(
                    s,
                    s >= self.threshold,
                    f"log-ratio {ratio:+.3f}/token with vs without the prompt",
                )
            )
        return verdicts
