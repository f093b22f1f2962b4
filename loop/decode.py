"""Batched decoding for the policy: a token loop over the model's forward pass.

`transformers`' `generate` spends most of a CPU decode step outside the model at the batch sizes
a round uses. Top-p sampling draws one exponential variate per vocabulary entry (49,152 for
SmolLM2) and sorts the whole vocabulary, every step; the default cache concatenates every layer's
keys and values to grow by one token. This loop samples from the same nucleus distribution
exactly, from the few most probable tokens, and writes keys and values into buffers allocated
once per batch. `benchmarks/generation.py` measures each of the two against `generate`.

Assumes a causal LM whose layers all use full attention; any other architecture (sliding
windows, state-space layers) keeps the cache `transformers` builds for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import (
    Cache,
    DynamicCache,
    DynamicLayer,
    get_layer_types_and_kwargs,
)

# The nucleus is looked for among this many most probable tokens first, then for the rows
# whose nucleus is larger (flat distributions) among the next size, and so on up to the whole
# vocabulary. Sorting a row's whole vocabulary (49,152 tokens) costs 25x its top 64.
_SHORTLISTS = (64, 2048)
_ROWS_PER_PASS = 16


class _BufferedLayer(DynamicLayer):
    """One layer's keys and values in buffers sized for the whole batch up front:
    (batch, kv_heads, capacity, head_dim), of which the first `length` positions are filled."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        batch, heads, _, dim = key_states.shape
        self._keys = key_states.new_empty(batch, heads, self.capacity, dim)
        self._values = value_states.new_empty(batch, heads, self.capacity, dim)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"decode cache holds {self.capacity} positions, {end} asked")
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values


def _cache(model: torch.nn.Module, capacity: int) -> Cache:
    config = model.config.get_text_config(decoder=True)
    layer_types, _ = get_layer_types_and_kwargs(config)
    if any(t != "full_attention" for t in layer_types):
        return DynamicCache(config=model.config)
    return Cache(layers=[_BufferedLayer(capacity) for _ in layer_types])


def _nucleus_pick(
    scores: torch.Tensor, top_p: float, k: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch,) tokens drawn from the top-p nucleus among each row's `k` best, and (batch,) the
    probability mass of those `k`: where it is below `top_p` the nucleus is not all there."""
    log_norm = scores.logsumexp(-1, keepdim=True)  # (batch, 1)
    top, ids = scores.topk(k, dim=-1)  # (batch, k), most probable first
    probs = (top - log_norm).exp()
    # A token belongs to the nucleus while the mass before it is below top_p (the smallest set
    # of most probable tokens whose mass reaches top_p, as transformers' TopPLogitsWarper keeps).
    kept = probs * ((probs.cumsum(-1) - probs) < top_p)
    cdf = kept.cumsum(-1)
    u = torch.rand(scores.shape[0], 1, generator=generator, device=scores.device) * cdf[:, -1:]
    pick = torch.searchsorted(cdf, u, right=True).clamp_max(k - 1)  # (batch, 1)
    return ids.gather(-1, pick).squeeze(-1), probs.sum(-1)


def _sample_rows(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    scores = logits.float() / temperature
    vocab = scores.shape[-1]
    if top_p >= 1.0:
        return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)
    tokens = torch.empty(len(scores), dtype=torch.long, device=scores.device)
    rows = torch.arange(len(scores), device=scores.device)
    for k in (*[k for k in _SHORTLISTS if k < vocab], vocab):
        picked, mass = _nucleus_pick(scores[rows], top_p, k, generator)
        tokens[rows] = picked
        rows = rows[(mass < top_p) & (k < vocab)]
        if not len(rows):
            break
    return tokens


def sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """(batch,) next tokens from (batch, vocab) logits: greedy at temperature 0, else drawn from
    the softmax at `temperature` restricted to its top-p nucleus."""
    # A few rows at a time: each pass over a chunk then finds it in cache. On one CPU core this
    # made sampling 256 rows of SmolLM2's vocabulary 2.7x faster than whole-batch passes.
    chunks = logits.split(_ROWS_PER_PASS)
    return torch.cat([_sample_rows(c, temperature, top_p, generator) for c in chunks])


@torch.no_grad()
def decode(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: set[int],
    pad_id: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    suppress: Sequence[int] = (),
) -> torch.Tensor:
    """(batch, steps) new tokens for a left-padded batch (batch, prompt); a row that has
    emitted a stop token is padded with `pad_id` after it. Stops early once every row has.
    Tokens in `suppress` are never emitted (a generation config's suppress_tokens)."""
    batch, width = input_ids.shape
    generator = generator or torch.Generator(device=input_ids.device).manual_seed(0)
    cache = _cache(model, width + max_new_tokens)
    device = input_ids.device
    mask = torch.ones(batch, width + max_new_tokens, dtype=attention_mask.dtype, device=device)
    mask[:, :width] = attention_mask
    positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)  # left padding shifts nothing
    stops = torch.tensor(sorted(stop_ids), device=device)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)

    step_ids = input_ids
    for step in range(max_new_tokens):
        logits = model(
            input_ids=step_ids,
            attention_mask=mask[:, : width + step],
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]  # (batch, vocab)
        if suppress:
            logits[:, list(suppress)] = float("-inf")
        tokens = sample(logits, temperature, top_p, generator).masked_fill(done, pad_id)
        out[:, step] = tokens
        done |= torch.isin(tokens, stops)
        if bool(done.all()):
            return out[:, : step + 1]
        step_ids = tokens.unsqueeze(-1)
        positions = positions[:, -1:] + 1
    return out
