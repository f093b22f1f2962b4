"""The decode loop: greedy tokens equal transformers' generate, nucleus sampling draws from the
hand-computed top-p distribution, and the cache and stop rules hold."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

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

    ours = dec.decode(policy.model, ids(policy, PROMPTS), dec.Draw(12, frozenset({-1})))
    theirs = policy.model.generate(
        **batch, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=pad,
        temperature=None, top_p=None, top_k=None,
    )  # fmt: skip

    assert ours == theirs[:, batch["input_ids"].shape[1] :].tolist()


def test_a_row_ends_at_its_stop_and_the_loop_when_all_rows_have(policy: Policy) -> None:
    free = dec.decode(policy.model, ids(policy, PROMPTS), dec.Draw(6, frozenset({-1})))
    stop = free[0][1]  # the first row's second token

    out = dec.decode(policy.model, ids(policy, PROMPTS), dec.Draw(6, frozenset({stop})))

    assert out == [row[: row.index(stop) + 1] if stop in row else row for row in free]


def ids(policy: Policy, conversations: list) -> list[list[int]]:
    return [policy._ids(policy._text(c)) for c in conversations]


def alone(policy: Policy, conversation: list | str, new: int, barred: list[int]) -> list[int]:
    """The conversation's greedy tokens from transformers' generate, unbatched, `barred` never
    emitted."""
    ids = policy._encode([conversation])["input_ids"]
    out = policy.model.generate(
        input_ids=ids, max_new_tokens=new, do_sample=False, eos_token_id=None,
        pad_token_id=policy.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
        suppress_tokens=barred or None,
    )  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


SYSTEM = [{"role": "system", "content": "You are a terse old sea captain who likes ships."}]
MORE = PROMPTS + [
    [{"role": "user", "content": "Why do cats purr?"}],
    [{"role": "user", "content": "Write one line about rain on a tin roof at night."}],
    [{"role": "user", "content": "What is two plus two?"}],
    # Long enough that the ring must grow while shorter rows are still decoding.
    [{"role": "user", "content": "Describe, step by step and in plain words, " * 8 + "a harbour."}],
]


@pytest.mark.parametrize("shared", [False, True], ids=["plain-text", "shared-system-prompt"])
def test_streamed_rows_equal_generate_when_finished_rows_are_refilled(
    policy: Policy, shared: bool
) -> None:
    # Plain strings skip the chat template, whose default system prompt every row would share.
    convs = [SYSTEM + p if shared else p[0]["content"] for p in MORE]
    # The tiny model answers a chat with newlines alone; barred, it writes varied tokens.
    barred = [policy._ids("\n")[0]]
    free = [alone(policy, c, 10, barred) for c in convs]
    stops = {free[0][2], free[-1][7]}  # rows stop at different steps, or run to the limit
    expected = [row[: 1 + next((k for k, t in enumerate(row) if t in stops), len(row) - 1)]
                for row in free]  # fmt: skip
    prompts = ids(policy, convs)
    assert shared == (dec.shared_prefix(prompts) >= dec.MIN_SHARED_PREFIX)

    # Two rows for seven prompts: each finished row takes the next prompt, and the last ones
    # decode in a batch cut down to the rows still running.
    draw = dec.Draw(10, frozenset(stops), suppress=tuple(barred))
    out = dec.stream(policy.model, prompts, draw, batch_size=2)

    assert out == expected
    assert len({len(row) for row in out}) > 1


# Five tokens with probabilities 0.5, 0.3, 0.1, 0.06, 0.04. At top_p 0.85 the mass before token
# 2 is 0.8 < 0.85, so it is kept; before token 3 it is 0.9, so 3 and 4 are dropped. The nucleus
# is renormalised: 0.5 / 0.9, 0.3 / 0.9, 0.1 / 0.9.
PROBS = torch.tensor([0.5, 0.3, 0.1, 0.06, 0.04])
EXPECTED = torch.tensor([5 / 9, 3 / 9, 1 / 9, 0.0, 0.0])


def draw(n: int, temperature: float = 1.0) -> torch.Tensor:
    logits = (PROBS.log() * temperature).expand(n, -1).contiguous()
    way = dec.Draw(1, frozenset(), temperature, 0.85)
    tokens = dec.sample(logits, way, torch.Generator().manual_seed(0))
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

    greedy, sampled = dec.Draw(1, frozenset(), 0.0, 0.9), dec.Draw(1, frozenset(), 1.0, 0.9)
    assert torch.equal(dec.sample(logits, greedy, torch.Generator()), logits.argmax(-1))
    one = dec.sample(logits, sampled, torch.Generator().manual_seed(1))
    again = dec.sample(logits, sampled, torch.Generator().manual_seed(1))
    assert torch.equal(one, again)


def test_shared_prefix_counts_the_tokens_every_prompt_starts_with() -> None:
    prompts = [[5, 6, 7, 8], [5, 6, 9], [5, 6, 7]]

    assert dec.shared_prefix(prompts) == 2
    assert dec.shared_prefix([prompts[0], prompts[2]]) == 3


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


def test_sliding_window_models_decode_in_batches_with_their_own_cache() -> None:
    config = Qwen2Config(
        vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True, sliding_window=4,
        max_window_layers=0, layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    # Rows longer than the window, and left padding inside it.
    prompts = [[1, 5, 7, 9, 11, 13], [1, 8], [1, 4, 4, 4]]
    expected = [
        model.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False, eos_token_id=None,
                       pad_token_id=0)[0, len(p) :].tolist()
        for p in prompts
    ]  # fmt: skip

    # A StaticCache would give every layer full attention; these layers keep their own cache.
    assert not dec._static(model)
    assert dec.stream(model, prompts, dec.Draw(8, frozenset({-1})), batch_size=2) == expected


def test_suppressed_tokens_are_never_emitted(policy: Policy) -> None:
    free = dec.stream(policy.model, ids(policy, PROMPTS), dec.Draw(4, frozenset({-1})))
    barred = tuple(sorted({t for row in free for t in row}))

    out = dec.stream(
        policy.model, ids(policy, PROMPTS), dec.Draw(4, frozenset({-1}), suppress=barred)
    )

    assert not {t for row in out for t in row} & set(barred)


def test_generation_settings_the_loop_does_not_apply_are_named(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.generation_config.repetition_penalty = 1.3
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)

    Policy(str(tmp_path), dtype="float32")

    assert "sets repetition_penalty=1.3, which selfloop does not apply" in caplog.text
