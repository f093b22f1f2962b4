"""The policy: a causal LM plus, optionally, one LoRA adapter merged into its weights, or the
weights of a fully fine-tuned copy of it.

Generators, judges and evaluation all hold one. The base weights are loaded once per actor; a new
adapter is swapped in place by restoring the pristine base weights and merging the adapter with
PEFT. Generation with an adapter therefore runs exactly as fast as the base model, with the KV
cache on (an unmerged adapter saved by a trainer can leave the cache off).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from loop.decode import ATTENTION, Draw, stream
from loop.errors import UserError
from loop.strategy import is_full_model
from loop.transport import Shipped, local

Message = dict[str, str]
Conversation = list[Message]

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int  # generated tokens, end-of-turn token excluded
    finished: bool  # False when the token limit cut the answer off


# Generation-config settings that transformers' generate would apply and loop.decode does not.
_UNAPPLIED = (
    "top_k", "min_p", "typical_p", "repetition_penalty", "no_repeat_ngram_size",
    "bad_words_ids", "min_new_tokens", "begin_suppress_tokens",
)  # fmt: skip


def _warn_unapplied(config: GenerationConfig, path: str) -> None:
    for name in _UNAPPLIED:
        value = getattr(config, name, None)
        if value not in (None, 0, 1.0):  # unset, or set to its no-op
            log.warning(
                "%s's generation config sets %s=%r, which selfloop does not apply: it samples "
                "with generate.temperature and generate.top_p alone",
                path, name, value,
            )  # fmt: skip


class Policy:
    def __init__(
        self,
        path: str,
        dtype: str = "bfloat16",
        threads: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(
            path, padding_side="left", trust_remote_code=trust_remote_code
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            path, dtype=_DTYPES[dtype], trust_remote_code=trust_remote_code
        ).eval()
        if self.model.config._attn_implementation == "sdpa":
            self.model.set_attn_implementation(ATTENTION)  # SDPA but for one-token decode steps
        self.trust_remote_code = trust_remote_code
        self.model.config.use_cache = True
        self.model.generation_config.use_cache = True
        self._pristine = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.adapter: str | None = None
        eos = self.model.generation_config.eos_token_id
        self._stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        self._stop_ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        _warn_unapplied(self.model.generation_config, path)

    # ---- adapters -------------------------------------------------------------------------

    @property
    def base_weights(self) -> dict[str, torch.Tensor]:
        """The base model's parameters as loaded, by name (what set_adapter(None) restores)."""
        return self._pristine

    @torch.no_grad()
    def set_adapter(self, adapter: str | Shipped | None) -> None:
        """Make the policy base + `adapter` (None: the base alone). A no-op if already so. It
        is a PEFT adapter folder, merged into the base, or a fully fine-tuned model folder
        (strategy full), whose weights are copied in; a Shipped record is made local first."""
        path = local(adapter)
        if path == self.adapter:
            return
        full = path is not None and is_full_model(path)
        weights = self._pristine if not full else self._weights_of(path)
        for name, param in self.model.named_parameters():
            param.copy_(weights[name])
        if path is not None and not full:
            from peft import PeftModel

            merged = PeftModel.from_pretrained(self.model, path).merge_and_unload()
            self.model = merged.eval()
        # PEFT freezes the base weights. On CPU, bf16 generation with frozen weights measured
        # about half as fast (~270 against ~520 tokens/s, batch 32), so unfreeze them again;
        # inference runs under no_grad either way.
        self.model.requires_grad_(True)
        self.adapter = path

    def _weights_of(self, folder: str) -> dict[str, torch.Tensor]:
        """The parameters of a saved model of the same architecture, by name."""
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=self.model.dtype, trust_remote_code=self.trust_remote_code
        )
        weights = dict(model.named_parameters())
        if weights.keys() != dict(self.model.named_parameters()).keys():
            raise UserError(
                f"{folder} is a model of another architecture than the policy's base: "
                "train it from this base, or make it the base (model.policy)"
            )
        return weights

    # ---- text -----------------------------------------------------------------------------

    def _text(self, conversation: Conversation | str) -> str:
        """Chat turns go through the chat template; a plain string is continued as it is."""
        if isinstance(conversation, str):
            return conversation
        return self.tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )

    def _encode(self, conversations: Sequence[Conversation | str]) -> dict[str, torch.Tensor]:
        texts = [self._text(c) for c in conversations]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    @torch.no_grad()
    def generate(
        self,
        conversations: Sequence[Conversation | str],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 32,
    ) -> list[Generation]:
        """Answer each conversation once. Prompts decode in length order, so that a batch's
        prefill wastes little on padding; the results come back in input order."""
        order = sorted(range(len(conversations)), key=lambda i: len(str(conversations[i])))
        texts = [self._text(conversations[i]) for i in order]
        prompts = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        draw = Draw(
            max_new_tokens,
            frozenset(self._stop_ids),
            temperature,
            top_p,
            tuple(self.model.generation_config.suppress_tokens or ()),
        )
        generator = torch.Generator(device=self.model.device).manual_seed(seed)
        new = stream(self.model, prompts, draw, generator, batch_size)  # per prompt, its tokens
        results = {i: self._decode(tokens) for i, tokens in zip(order, new, strict=True)}
        return [results[i] for i in range(len(conversations))]

    def _decode(self, ids: list[int]) -> Generation:
        end = next((k for k, t in enumerate(ids) if t in self._stop_ids), None)
        kept = ids if end is None else ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return Generation(text=text, tokens=len(kept), finished=end is not None)

    @torch.no_grad()
    def next_token_probs(
        self,
        conversations: Sequence[Conversation],
        options: dict[str, Sequence[str]],
        batch_size: int = 16,
    ) -> list[dict[str, float]]:
        """For each conversation, the probability mass the model puts on each option's tokens
        as the first token of its reply. `options` maps a label to the strings that spell it
        (e.g. yes -> ["Yes", "yes"]); each string's first token counts."""
        token_ids = {label: self._first_tokens(words) for label, words in options.items()}
        out: list[dict[str, float]] = []
        for start in range(0, len(conversations), batch_size):
            batch = self._encode(conversations[start : start + batch_size])
            logits = self.model(**batch, logits_to_keep=1).logits[:, -1].float()  # (batch, vocab)
            probs = torch.softmax(logits, dim=-1)
            for row in probs:
                out.append({label: float(row[ids].sum()) for label, ids in token_ids.items()})
        return out

    def completion_logprobs(
        self, prompts: Sequence[Conversation], completions: Sequence[str], batch_size: int = 8
    ) -> list[tuple[float, int]]:
        """(sum of log-probabilities, token count) of each completion as the reply to its prompt.
        Prompt and completion are tokenized separately, so the split between them is exact."""
        out: list[tuple[float, int]] = []
        for rows, ids in self._completion_rows(prompts, completions, batch_size):
            picked = rows.gather(-1, ids.unsqueeze(-1))
            out.append((float(picked.sum()), len(ids)))
        return out

    def completion_distributions(
        self, prompts: Sequence[Conversation], completions: Sequence[str], batch_size: int = 8
    ) -> list[torch.Tensor]:
        """Per completion, the log-probabilities over the whole vocabulary at each of its tokens,
        (tokens, vocab) float32: what comparing two policies on the same text needs."""
        return [rows for rows, _ in self._completion_rows(prompts, completions, batch_size)]

    @torch.no_grad()
    def _completion_rows(
        self, prompts: Sequence[Conversation], completions: Sequence[str], batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per pair, the log-distributions that predict the completion's tokens (tokens, vocab)
        and those token ids (tokens,)."""
        for start in range(0, len(prompts), batch_size):
            pairs = [
                (
                    self._ids(
                        self.tokenizer.apply_chat_template(
                            p, tokenize=False, add_generation_prompt=True
                        )
                    ),
                    self._ids(c),
                )
                for p, c in zip(
                    prompts[start : start + batch_size],
                    completions[start : start + batch_size],
                    strict=True,
                )
            ]
            width = max(len(p) + len(c) for p, c in pairs)
            ids = torch.full((len(pairs), width), self.tokenizer.pad_token_id)
            mask = torch.zeros((len(pairs), width), dtype=torch.long)
            for b, (p, c) in enumerate(pairs):
                ids[b, : len(p) + len(c)] = torch.tensor(p + c)
                mask[b, : len(p) + len(c)] = 1
            logits = self.model(input_ids=ids, attention_mask=mask).logits  # (batch, seq, vocab)
            for b, (p, c) in enumerate(pairs):
                # the token at position t is predicted by the logits at t - 1
                rows = logits[b, len(p) - 1 : len(p) + len(c) - 1].float().log_softmax(-1)
                yield rows, torch.tensor(c, dtype=torch.long)

    @torch.no_grad()
    def text_logprobs(
        self, texts: Sequence[str], batch_size: int = 16, prefix: str = ""
    ) -> list[tuple[float, int]]:
        """(sum of log-probabilities, token count) of each plain text, chat template not applied.
        The text follows the BOS token where the tokenizer has one, so every token is scored;
        without one the first token has no context and is left out. A `prefix` is context only:
        it is tokenized on its own and put before the text, and its tokens are not scored."""
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        context = bos + (self._ids(prefix) if prefix else [])
        start = max(len(context), 1)  # index of the first scored token
        out: list[tuple[float, int]] = []
        for first in range(0, len(texts), batch_size):
            seqs = [context + self._ids(t) for t in texts[first : first + batch_size]]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for b, seq in enumerate(seqs):
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
            # Only positions from the last context token on predict scored tokens: projecting
            # the shared prefix onto the vocabulary would cost most of the time and memory.
            keep = width - start + 1
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
            for b, seq in enumerate(seqs):  # logits: (batch, keep, vocab), position start - 1 on
                if len(seq) <= start:
                    out.append((0.0, 0))
                    continue
                rows = logits[b, : len(seq) - start].float().log_softmax(-1)
                picked = rows.gather(-1, torch.tensor(seq[start:]).unsqueeze(-1))
                out.append((float(picked.sum()), len(seq) - start))
        return out

    def prompt_tokens(self, conversation: Conversation) -> int:
        """Tokens the model reads for one request: the chat template with the reply opened."""
        return len(self._ids(self._text(conversation)))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _first_tokens(self, words: Sequence[str]) -> list[int]:
        ids = {self.tokenizer.encode(w, add_special_tokens=False)[0] for w in words}
        return sorted(ids)
