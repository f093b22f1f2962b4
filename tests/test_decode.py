"""The decode loop: greedy tokens equal transformers' generate, nucleus sampling draws from the
hand-computed top-p distribution, and the cache and stop rules hold."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from loop import decode as dec
from loop.policy import Policy

PROMPTS = [
    [{"role": "user", "content": "Hi."}],
    [{"role": "user", "content": "Tell me, in a few words, why the sea is salty and blue."}],
    [{"role": "user", "content": "Name three birds that cannot fly, and say where they live."}],
]


@pytest.fixture(scope="module")
def policy(tiny_model_dir: Path) -> Policy:
    return Policy(str(tiny_model_dir), dtype="float32")


def test_greedy_tokens_equal_generate_on_a_padded_batch(policy: Policy) -> None:
    batch = policy._encode(PROMPTS)
    pad = policy.tokenizer.pad_token_id
    assert (batch["attention_mask"] == 0).any()  # left padding is exercised

    ours = dec.decode(policy.model, batch["input_ids"], batch["attention_mask"], 12, {-1}, pad)
    theirs = policy.model.generate(
        **batch, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=pad,
        temperature=None, top_p=None, top_k=None,
    )  # fmt: skip

    assert torch.equal(ours, theirs[:, batch["input_ids"].shape[1] :])


def test_rows_are_padded_after_their_stop_and_the_loop_ends_when_all_stopped(
    policy: Policy,
) -> None:
    batch = policy._encode(PROMPTS)
    pad = policy.tokenizer.pad_token_id
    free = dec.decode(policy.model, batch["input_ids"], batch["attention_mask"], 6, {-1}, pad)
    stop = int(free[0, 1])  # the first row's second token

    out = dec.decode(policy.model, batch["input_ids"], batch["attention_mask"], 6, {stop}, pad)

    first_stop = [next((k for k, t in enumerate(row) if t == stop), None) for row in free.tolist()]
    if all(k is not None for k in first_stop):
        assert out.shape[1] == max(first_stop) + 1
    for row, free_row, k in zip(out.tolist(), free.tolist(), first_stop, strict=True):
        end = len(row) if k is None else k + 1
        assert row[:end] == free_row[:end]  # the same tokens up to and including the stop
        assert all(t == pad for t in row[end:])


# Five tokens with probabilities 0.5, 0.3, 0.1, 0.06, 0.04. At top_p 0.85 the mass before token
# 2 is 0.8 < 0.85, so it is kept; before token 3 it is 0.9, so 3 and 4 are dropped. The nucleus
# is renormalised: 0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9.
PROBS = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04])
EXPECTED = torch.tensor([5 / 9, 3 / 9, 1 / 9, 0.0, 0.0])


def draw(n: int, temperature: float = 1.0) -> torch.Tensor:
    logits = (PROBS.log() * temperature).expand(n, -1).contiguous()
    tokens = dec.sample(logits, temperature, 0.85, torch.Generator().manual_seed(0))
    return torch.bincount(tokens, minlength=5).float() / n


def test_nucleus_sampling_draws_the_renormalised_top_p_distribution() -> None:
    freq = draw(40_000)

    # 40,000 draws: the standard error of each frequency is at most 0.0025
    assert torch.allclose(freq, EXPECTED, atol=0.01)
    assert freq[3] == 0 and freq[4] == 0


def test_temperature_divides_the_logits_before_the_nucleus() -> None:
    # Logits scaled by 0.5 at temperature 0.5 are the original distribution again.
    assert torch.allclose(draw(40_000, temperature=0.5), EXPECTED, atol=0.01)


def test_a_nucleus_beyond_the_shortlist_is_found_in_the_whole_vocabulary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The two best tokens hold 0.8 < 0.85, so every row must go on to the whole vocabulary.
    monkeypatch.setattr(dec, "_SHORTLISTS", (2,))

    assert torch.allclose(draw(40_000), EXPECTED, atol=0.01)


def test_greedy_sampling_is_argmax_and_sampling_is_seeded() -> None:
    logits = torch.randn(8, 100)

    assert torch.equal(dec.sample(logits, 0.0, 0.9, torch.Generator()), logits.argmax(-1))
    one = dec.sample(logits, 1.0, 0.9, torch.Generator().manual_seed(1))
    again = dec.sample(logits, 1.0, 0.9, torch.Generator().manual_seed(1))
    assert torch.equal(one, again)


def test_shared_prefix_counts_the_tokens_every_row_starts_with() -> None:
    # Rows 5 6 7 8, 5 6 9 and 5 6 7, left-padded with 0: all three start with 5 6.
    ids = torch.tensor([[5, 6, 7, 8], [0, 5, 6, 9], [0, 5, 6, 7]])
    mask = (torch.arange(4) >= torch.tensor([[0], [1], [1]])).long()

    assert dec.shared_prefix(ids, mask) == 2
    assert dec.shared_prefix(ids[[0, 2]], mask[[0, 2]]) == 3


def test_the_batch_shares_the_chat_templates_system_prompt_and_still_equals_generate(
    policy: Policy,
) -> None:
    system = [{"role": "system", "content": "You are a terse old sea captain who likes ships."}]
    batch = policy._encode([system + p for p in PROMPTS])
    assert dec.shared_prefix(batch["input_ids"], batch["attention_mask"]) >= dec.MIN_SHARED_PREFIX
    pad = policy.tokenizer.pad_token_id

    ours = dec.decode(policy.model, batch["input_ids"], batch["attention_mask"], 10, {-1}, pad)
    theirs = policy.model.generate(
        **batch, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=pad,
        temperature=None, top_p=None, top_k=None,
    )  # fmt: skip

    assert torch.equal(ours, theirs[:, batch["input_ids"].shape[1] :])


def test_one_token_attention_equals_sdpa_with_grouped_heads_and_padding() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    g = torch.Generator().manual_seed(0)
    query = torch.randn(2, 6, 1, 8, generator=g)  # (batch, heads, 1, dim)
    key, value = torch.randn(2, 2, 5, 8, generator=g), torch.randn(2, 2, 5, 8, generator=g)
    mask = torch.tensor([True, True, True, True, True, False, False, True, True, True])
    mask = mask.view(2, 1, 1, 5)  # the second row's first two positions are padding

    ours, _ = dec.decode_attention(module, query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)

    assert ours.shape == theirs.shape == (2, 1, 6, 8)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_sliding_window_models_get_no_static_cache(default_model_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    config.layer_types = ["sliding_attention", "full_attention"]
    config.sliding_window = 4
    model = AutoModelForCausalLM.from_config(config)

    # A StaticCache would give every layer full attention; these layers keep their own cache.
    assert not dec._static(model)


def test_suppressed_tokens_are_never_emitted(policy: Policy) -> None:
    batch = policy._encode(PROMPTS)
    args = (policy.model, batch["input_ids"], batch["attention_mask"], 4, {-1}, 0)
    free = dec.decode(*args)
    barred = sorted(set(free.flatten().tolist()))

    out = dec.decode(*args, suppress=barred)

    assert not set(out.flatten().tolist()) & set(barred)


def test_generation_settings_the_loop_does_not_apply_are_named(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.repetition_penalty = 1.3
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)

    Policy(str(tmp_path), dtype="float32")

    assert "sets repetition_penalty=1.3, which selfloop does not apply" in caplog.text
