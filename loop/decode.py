"""Batched decoding for the policy: a token loop over the model's forward pass.

`transformers`' `generate` spends much of a CPU decode step outside the model's weights at the
batch sizes a round uses, and a batch decodes until its longest answer ends, with every row
that finished earlier riding along. Top-p sampling draws one exponential variate per vocabulary
entry (49,152 for SmolLM2) and sorts the whole vocabulary, every step; the default cache
concatenates every layer's keys and values to grow by one token; bf16 attention for one query
token runs through a flash kernel built for long queries. This loop keeps a fixed number of rows
decoding and prefills the next prompt into a row as soon as its answer ends (continuous
batching); samples from the same nucleus distribution exactly, from the few most probable
tokens; keeps keys and values in transformers' StaticCache, written in place, one slot per step
for every row; attends for one query token with two plain matmuls per key/value head group; and
computes the prompt prefix that every prompt shares (the persona's system prompt) once.
`benchmarks/generation.py` measures it against `generate`.

Assumes a causal LM whose layers all use full attention, with this module's attention; any
other model (sliding windows, state-space layers) decodes in plain batches with the cache
`transformers` builds for it, and shares no prefix.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import DynamicCache, StaticCache, get_layer_types_and_kwargs
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


@dataclass(frozen=True)
class Draw:
    """How new tokens are drawn: greedy at temperature 0, else from the softmax at
    `temperature` restricted to its top-p nucleus; an answer ends at a token of `stop_ids` (kept
    in it) or after `max_new_tokens`; tokens in `suppress` are never drawn (a generation
    config's suppress_tokens)."""

    max_new_tokens: int
    stop_ids: frozenset[int]
    temperature: float = 0.0
    top_p: float = 1.0
    suppress: tuple[int, ...] = ()


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


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many tokens every prompt starts with alike."""
    first, shortest = prompts[0], min(len(p) for p in prompts)
    return next((k for k in range(shortest) if any(p[k] != first[k] for p in prompts)), shortest)


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


def sample(logits: torch.Tensor, draw: Draw, generator: torch.Generator) -> torch.Tensor:
    """(batch,) next tokens from (batch, vocab) logits, as `draw` says (its stop tokens and
    token limit aside)."""
    if draw.suppress:
        logits = logits.index_fill(
            -1, torch.tensor(draw.suppress, device=logits.device), -torch.inf
        )
    # A few rows at a time: each pass over a chunk then finds it in cache. On one CPU core this
    # made sampling 256 rows of SmolLM2's vocabulary 2.7x faster than whole-batch passes.
    chunks = logits.split(_ROWS_PER_PASS)
    return torch.cat([_sample_rows(c, draw.temperature, draw.top_p, generator) for c in chunks])


class _Ring:
    """The keys and values of up to `rows` sequences, each in its own row of a StaticCache whose
    positions are used as a ring. Every decode step writes all rows at the same ring slot, so
    one index serves the whole batch; a row's tokens may sit anywhere in its ring, since their
    positions are in their rotary encoding and its mask says which slots it attends to. A row
    lives for at most its prompt plus its new tokens, and the ring holds as many slots as the
    longest row admitted needs: a slot is never written while its row still needs it."""

    def __init__(self, model: torch.nn.Module, rows: int, capacity: int) -> None:
        self.model, self.capacity, self.at = model, capacity, 0
        config = model.config.get_text_config(decoder=True)
        head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self.cache = StaticCache(config=model.config, max_cache_len=capacity)
        self.cache.early_initialization(
            rows, config.num_key_value_heads, head_dim, model.dtype, model.device
        )
        # (rows, capacity): the slots each row attends to; (rows, 1): each row's next position
        self.mask = torch.zeros(rows, capacity, dtype=torch.bool, device=model.device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=model.device)

    def admit(self, rows: list[int], prompts: list[list[int]], prefix: DynamicCache | None,
              shared: int) -> torch.Tensor:  # fmt: skip
        """Prefill `prompts` into `rows`, in the slots just before the ring's next one; their
        first `shared` tokens are already in `prefix` (one row). The (len(rows), vocab) logits
        of each prompt's last token."""
        device = self.mask.device
        own = torch.tensor([len(p) - shared for p in prompts])
        width = int(own.max())
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        pad = torch.arange(width) < (width - own).unsqueeze(-1)  # (new, width): left padding
        for b, p in enumerate(prompts):
            ids[b, width - len(p) + shared :] = torch.tensor(p[shared:])
        cache = DynamicCache(config=self.model.config)
        if prefix is not None:
            for layer, alone in zip(cache.layers, prefix.layers, strict=True):
                layer.update(alone.keys.expand(len(prompts), -1, -1, -1),
                             alone.values.expand(len(prompts), -1, -1, -1))  # fmt: skip
        mask = torch.cat([torch.ones(len(prompts), shared, dtype=torch.long), (~pad).long()], -1)
        logits = self.model(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            position_ids=(shared + (~pad).long().cumsum(-1) - 1).clamp_min(0).to(device),
            cache=cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1]  # fmt: skip

        # Each prompt's tokens, its prefix and its own, go to the slots just before the next.
        lengths = (own + shared).tolist()
        source = torch.cat([
            torch.cat([torch.arange(shared), torch.arange(shared + width - n, shared + width)])
            for n in own.tolist()
        ]).to(device)  # fmt: skip
        target = torch.cat([(self.at - n + torch.arange(n)) % self.capacity for n in lengths])
        target = target.to(device)
        counts = torch.tensor(lengths, device=device)
        row = torch.tensor(rows, device=device).repeat_interleave(counts)
        new = torch.arange(len(rows), device=device).repeat_interleave(counts)
        for ring, filled in zip(self.cache.layers, cache.layers, strict=True):
            ring.keys[row, :, target] = filled.keys[new, :, source]
            ring.values[row, :, target] = filled.values[new, :, source]
        self.mask[rows] = False
        self.mask[row, target] = True
        self.positions[rows, 0] = torch.tensor(lengths, device=device)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row its (rows,) next token; the (rows, vocab) logits after it."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.at)  # where StaticCache writes the new keys
        self.mask[:, self.at] = True
        logits = self.model(
            input_ids=tokens.unsqueeze(-1), attention_mask=self.mask[:, None, None, :],
            position_ids=self.positions, cache=self.cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1]  # fmt: skip
        self.positions += 1
        self.at = (self.at + 1) % self.capacity
        return logits

    def grow(self, capacity: int) -> None:
        """Room for at least `capacity` slots. The ring is unrolled into the first slots of the
        larger one, oldest first, so every row's tokens stay in order behind the next slot.
        Attention reads every slot of the ring, so it starts as large as the first prompts need
        and grows with the prompts admitted (in length order, it grows a few times)."""
        if capacity <= self.capacity:
            return
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[-1])
                new[:, :, : self.capacity] = old.roll(-self.at, dims=2)
                setattr(layer, name, new)
            layer.max_cache_len = capacity
        mask = self.mask.new_zeros(len(self.mask), capacity)
        mask[:, : self.capacity] = self.mask.roll(-self.at, dims=1)
        self.mask, self.at, self.capacity = mask, self.capacity, capacity

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices), dropping the others: later steps cost as much as the rows
        left."""
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]
        self.mask, self.positions = self.mask[rows], self.positions[rows]


def _slots(prompts: list[list[int]], max_new_tokens: int) -> int:
    """Ring slots for these prompts' rows, rounded up to 32 so that the ring grows seldom."""
    return -(-(max(len(p) for p in prompts) + max_new_tokens) // 32) * 32


def _ring_ready(model: torch.nn.Module) -> bool:
    """Whether the ring can hold this model's cache and its attention reads the ring's mask."""
    return _static(model) and model.config._attn_implementation == ATTENTION


def _shared_cache(
    model: torch.nn.Module, prompts: list[list[int]]
) -> tuple[DynamicCache | None, int]:
    """The keys and values of the prefix every prompt shares (one row), and its length; none
    where it is too short to be worth copying, or is some prompt's whole text."""
    shared = shared_prefix(prompts) if len(prompts) > 1 else 0
    if not MIN_SHARED_PREFIX <= shared < min(len(p) for p in prompts):
        return None, 0
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prompts[0][:shared]], device=model.device)
    model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
    return cache, shared


@torch.no_grad()
def stream(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    draw: Draw,
    generator: torch.Generator | None = None,
    batch_size: int = 32,
) -> list[list[int]]:
    """The new tokens of each prompt (token ids). Up to `batch_size` prompts decode at once,
    in the order given; when one's answer ends, the next waiting prompt is prefilled into its
    row (continuous batching), so rows that have finished do not ride along until the longest
    answer of a batch ends. The prefix every prompt shares (a persona's system prompt) is
    computed once."""
    if not all(prompts):
        raise ValueError("every prompt needs at least one token to continue from")
    generator = generator or torch.Generator(device=model.device).manual_seed(0)
    if not prompts or draw.max_new_tokens < 1:
        return [[] for _ in prompts]
    if not _ring_ready(model):
        batches = [
            prompts[start : start + batch_size] for start in range(0, len(prompts), batch_size)
        ]
        return [row for batch in batches for row in decode(model, batch, draw, generator)]
    device = model.device
    prompts = [list(p) for p in prompts]
    prefix, shared = _shared_cache(model, prompts)
    rows = min(batch_size, len(prompts))
    ring = _Ring(model, rows, _slots(prompts[:rows], draw.max_new_tokens))
    stops = torch.tensor(sorted(draw.stop_ids), device=device)
    out: list[list[int]] = [[] for _ in prompts]
    owner = [-1] * rows  # the prompt each row decodes, -1 for none
    logits = torch.zeros(rows, model.get_output_embeddings().weight.shape[0], device=device)
    waiting = deque(range(len(prompts)))
    while True:
        # Fill free rows a few at a time: a prefill per row would cost a forward pass each.
        free = [r for r, i in enumerate(owner) if i < 0]
        if waiting and free and (len(free) >= max(1, rows // 8) or len(free) == len(owner)):
            taken = [(r, waiting.popleft()) for r in free[: len(waiting)]]
            ring.grow(_slots([prompts[i] for _, i in taken], draw.max_new_tokens))
            new_rows = [r for r, _ in taken]
            logits[new_rows] = ring.admit(new_rows, [prompts[i] for _, i in taken], prefix,
                                          shared).to(logits.dtype)  # fmt: skip
            for r, i in taken:
                owner[r] = i

        # Sample the rows that decode; a row whose answer ended is free from now on.
        live = torch.tensor([i >= 0 for i in owner], device=device)
        tokens = torch.zeros(len(owner), dtype=torch.long, device=device)
        tokens[live] = sample(logits[live], draw, generator)
        ended = torch.isin(tokens, stops).tolist()
        for r, token in enumerate(tokens.tolist()):
            if owner[r] >= 0:
                out[owner[r]].append(token)
                if ended[r] or len(out[owner[r]]) == draw.max_new_tokens:
                    owner[r] = -1
        running = [r for r, i in enumerate(owner) if i >= 0]
        if not running and not waiting:
            return out

        # With nothing left to admit, drop the finished rows once they are half the batch.
        if not waiting and len(running) <= len(owner) // 2:
            kept = torch.tensor(running, device=device)
            ring.keep(kept)
            owner, tokens, logits = [owner[r] for r in running], tokens[kept], logits[kept]
        logits = ring.step(tokens).to(logits.dtype)


@torch.no_grad()
def decode(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    draw: Draw,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """The new tokens of each prompt (token ids), decoded as one left-padded batch with
    transformers' own cache until every answer has ended: what `stream` falls back to for a
    model whose cache or attention the ring cannot serve."""
    device = model.device
    generator = generator or torch.Generator(device=device).manual_seed(0)
    batch, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.zeros(batch, width, dtype=torch.long, device=device)
    mask = torch.zeros(batch, width + draw.max_new_tokens, dtype=torch.long, device=device)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :], mask[b, width - len(p) : width] = torch.tensor(p), 1
    positions = (mask[:, :width].cumsum(-1) - 1).clamp_min(0)  # left padding shifts nothing
    cache = DynamicCache(config=model.config)
    logits = model(input_ids=ids, attention_mask=mask[:, :width], position_ids=positions,
                   cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # fmt: skip
    stops = torch.tensor(sorted(draw.stop_ids), device=device)
    out: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for step in range(draw.max_new_tokens):
        tokens = sample(logits, draw, generator)
        for row, (token, ended) in enumerate(zip(tokens.tolist(), done.tolist(), strict=True)):
            if not ended:
                out[row].append(token)
        done |= torch.isin(tokens, stops)
        if bool(done.all()) or step == draw.max_new_tokens - 1:
            break
        mask[:, width + step] = 1
        logits = model(input_ids=tokens.unsqueeze(-1), attention_mask=mask[:, : width + step + 1],
                       position_ids=positions[:, -1:] + 1 + step, cache=cache, use_cache=True,
                       logits_to_keep=1).logits[:, -1]  # fmt: skip
    return out
