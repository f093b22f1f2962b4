"""Batched decoding for the policy: a token loop over the model's forward pass.

`transformers`' `generate` spends much of a CPU decode step outside the model's weights at the
batch sizes a round uses. Top-p sampling draws one exponential variate per vocabulary entry
(49,152 for SmolLM2) and sorts the whole vocabulary, every step; the default cache concatenates
every layer's keys and values to grow by one token; bf16 attention for one query token runs
through a flash kernel built for long queries. This loop samples from the same nucleus
distribution exactly, from the few most probable tokens; keeps keys and values in transformers'
StaticCache, written in place; attends for one query token with two plain matmuls per key/value
head group; and computes the prompt prefix that every row of a batch shares (the persona's system
prompt) once instead of once per row. `benchmarks/generation.py` measures it against `generate`.

Assumes a causal LM whose layers all use full attention; any other architecture (sliding
windows, state-space layers) keeps the cache `transformers` builds for it and shares no prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import Cache, DynamicCache, StaticCache, get_layer_types_and_kwargs
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

# The nucleus is looked for among this many most probable tokens first, then for the rows
# whose nucleus is larger (flat distributions) among the next size, and so on up to the whole
# vocabulary. Sorting a row's whole vocabulary (49,152 tokens) costs 25x its top 64.
_SHORTLISTS = (64, 2048)
_ROWS_PER_PASS = 16
# A shared prefix shorter than this is computed per row: copying its keys costs about as much.
MIN_SHARED_PREFIX = 8
ATTENTION = "selfloop_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA, except for one query token per row: there the query heads that share a key/value
    head attend as one (batch, kv_heads, group, dim) matmul. On a CPU in bf16 that is 2x faster
    than SDPA's kernel and needs no contiguous copy of the cache."""
    batch, heads, length, dim = query.shape
    if length != 1 or kwargs.get("softcap") is not None or (module.training and dropout):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kv_heads = key.shape[1]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = grouped @ key.transpose(-1, -2) * (dim**-0.5 if scaling is None else scaling)
    if attention_mask is not None:  # (batch, 1, 1, kv): True, or 0.0, where a row may attend
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probs = scores.float().softmax(-1).to(value.dtype)  # (batch, kv_heads, group, kv)
    out = probs @ value  # (batch, kv_heads, group, dim)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


AttentionInterface.register(ATTENTION, decode_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _static(model: torch.nn.Module) -> bool:
    config = model.config.get_text_config(decoder=True)
    layer_types, _ = get_layer_types_and_kwargs(config)
    return all(t == "full_attention" for t in layer_types)


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> int:
    """How many tokens every row of a left-padded batch starts with alike."""
    lengths = attention_mask.sum(-1).tolist()
    rows = [ids[len(ids) - n :] for ids, n in zip(input_ids.tolist(), lengths, strict=True)]
    shortest = min(lengths)
    first = rows[0]
    return next(
        (k for k in range(shortest) if any(r[k] != first[k] for r in rows)), shortest
    )


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


def _prefill(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    capacity: int,
) -> tuple[Cache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the prompts through the model: the cache, the (batch, capacity) mask of the
    positions written so far, each row's next position (batch, 1), and the (batch, vocab)
    logits of each row's last prompt token. A prefix that every row shares is run once, for
    the first row, and its keys and values copied to the others; each row's own rest then
    follows it, left-padded, with the padding masked in the middle of the sequence."""
    batch, width = input_ids.shape
    device = input_ids.device
    if not _static(model):
        cache: Cache = DynamicCache(config=model.config)
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)  # left padding shifts nothing
        mask = torch.zeros(batch, capacity, dtype=attention_mask.dtype, device=device)
        mask[:, :width] = attention_mask
        logits = model(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=positions, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]  # fmt: skip
        return cache, mask, positions[:, -1:] + 1, logits

    shared = shared_prefix(input_ids, attention_mask) if batch > 1 else 0
    shared = shared if MIN_SHARED_PREFIX <= shared < attention_mask.sum(-1).min() else 0
    cache = StaticCache(config=model.config, max_cache_len=capacity)
    mask = torch.zeros(batch, capacity, dtype=attention_mask.dtype, device=device)
    if shared:
        # (1, shared): every row's prefix is the first row's, whatever its padding
        first = input_ids[0, width - int(attention_mask[0].sum()) :][:shared].unsqueeze(0)
        alone = DynamicCache(config=model.config)
        model(input_ids=first, cache=alone, use_cache=True, logits_to_keep=1)
        for layer, own in zip(cache.layers, alone.layers, strict=True):
            layer.update(own.keys.expand(batch, -1, -1, -1), own.values.expand(batch, -1, -1, -1))
        mask[:, :shared] = 1
    # Each row's rest, moved left past its shared prefix and left-padded again: (batch, rest)
    rest = width - shared
    ids = torch.full((batch, rest), 0, dtype=input_ids.dtype, device=device)
    own_mask = torch.zeros(batch, rest, dtype=attention_mask.dtype, device=device)
    for b, n in enumerate(attention_mask.sum(-1).tolist()):
        ids[b, rest - (n - shared) :] = input_ids[b, width - n + shared :]
        own_mask[b, rest - (n - shared) :] = 1
    mask[:, shared:width] = own_mask
    positions = shared + (own_mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # fmt: skip
    return cache, mask, positions[:, -1:] + 1, logits


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
    device = input_ids.device
    generator = generator or torch.Generator(device=device).manual_seed(0)
    cache, mask, positions, logits = _prefill(
        model, input_ids, attention_mask, width + max_new_tokens
    )
    # A StaticCache attends over all its positions, the unwritten ones masked; another cache
    # over those written so far.
    static = isinstance(cache, StaticCache)
    stops = torch.tensor(sorted(stop_ids), device=device)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)

    for step in range(max_new_tokens):
        if suppress:
            logits[:, list(suppress)] = float("-inf")
        tokens = sample(logits, temperature, top_p, generator).masked_fill(done, pad_id)
        out[:, step] = tokens
        done |= torch.isin(tokens, stops)
        if bool(done.all()) or step == max_new_tokens - 1:
            return out[:, : step + 1]
        mask[:, width + step] = 1
        logits = model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=mask if static else mask[:, : width + step + 1],
            position_ids=positions + step,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]  # (batch, vocab)
    return out
