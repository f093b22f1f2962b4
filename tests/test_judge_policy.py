"""The policy on a tiny random Llama: token probabilities, the judge score, generation order and
determinism, and adapters merged in place."""

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from critics.base import Candidate, Verdict
from critics.contrast import ContrastCritic
from critics.judge import YES_NO, p_yes, rubric_conversation
from loop.policy import Conversation, Policy

# First tokens of the judge's option strings in the SmolLM2 tokenizer (each string is one token).
YES_IDS = [9230, 9805, 10407, 10539]  # " Yes", " yes", "yes", "Yes"
NO_IDS = [787, 2838, 4607, 5230]  # " no", " No", "no", "No"

SHORT: Conversation = [{"role": "user", "content": "Hi."}]
LONG: Conversation = [
    {"role": "user", "content": "Tell me, in a few words, why the sea is salty and why it is blue."}
]


@pytest.fixture(scope="module")
def policy(tiny_model_dir: Path) -> Policy:
    return Policy(str(tiny_model_dir), dtype="float32")


def fresh_base(tiny_model_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@torch.no_grad()
def last_logits(model: torch.nn.Module, policy: Policy, conv: Conversation) -> torch.Tensor:
    """(vocab,) logits after the chat-templated conversation, unbatched and unpadded."""
    text = policy.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    ids = policy.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    return model(input_ids=ids).logits[0, -1].float()


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two LoRA adapters with non-zero lora_B, so each one changes the model's output."""
    from peft import LoraConfig, get_peft_model

    folders = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        model = get_peft_model(fresh_base(tiny_model_dir), lora)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.5)
        folder = tmp_path_factory.mktemp(f"adapter-{seed}")
        model.save_pretrained(folder)
        folders.append(str(folder))
    return folders


# ---- token probabilities and the judge -----------------------------------------------------------


def test_option_strings_are_single_tokens(policy: Policy) -> None:
    encoded = [policy.tokenizer.encode(w, add_special_tokens=False) for w in YES_NO["yes"]]

    assert encoded == [[10539], [10407], [9230], [9805]]
    assert policy._first_tokens(YES_NO["no"]) == NO_IDS


def test_next_token_probs_is_the_softmax_mass_on_the_option_tokens(policy: Policy) -> None:
    convs = [LONG, SHORT]  # different lengths: the batch is left-padded

    probs = policy.next_token_probs(convs, YES_NO)

    for conv, got in zip(convs, probs, strict=True):
        softmax = torch.softmax(last_logits(policy.model, policy, conv), dim=-1)
        assert got["yes"] == pytest.approx(float(softmax[YES_IDS].sum()), rel=1e-4)
        assert got["no"] == pytest.approx(float(softmax[NO_IDS].sum()), rel=1e-4)
        assert 0.0 < got["yes"] < 1.0


def test_next_token_probs_do_not_depend_on_the_batch(policy: Policy) -> None:
    convs = [SHORT, LONG, SHORT]

    batched = policy.next_token_probs(convs, YES_NO, batch_size=3)
    alone = policy.next_token_probs(convs, YES_NO, batch_size=1)

    for b, a in zip(batched, alone, strict=True):
        assert b == pytest.approx(a, rel=1e-4)


def test_p_yes_renormalises_yes_over_yes_and_no(policy: Policy) -> None:
    question = "Is the response polite?"
    pairs = [("Say hi.", "Hello there, friend!"), ("Describe the sea in detail.", "Wet.")]

    scores = p_yes(policy, question, pairs)

    for (instruction, response), score in zip(pairs, scores, strict=True):
        conv = rubric_conversation(question, instruction, response)
        softmax = torch.softmax(last_logits(policy.model, policy, conv), dim=-1)
        yes, no = float(softmax[YES_IDS].sum()), float(softmax[NO_IDS].sum())
        assert score == pytest.approx(yes / (yes + no), rel=1e-4)


def test_rubric_conversation_text() -> None:
    assert rubric_conversation("Is it kind?", "Say hi.", "Hello!") == [
        {
            "role": "user",
            "content": "Read the instruction and the response, then answer the question.\n\n"
            "Instruction: Say hi.\n\nResponse: Hello!\n\nQuestion: Is it kind? Answer yes or no.",
        }
    ]


@torch.no_grad()
def manual_logprob(policy: Policy, conv: Conversation, completion: str) -> tuple[float, int]:
    """Sum of log p(completion token | everything before it), one unpadded sequence."""
    tok = policy.tokenizer
    prompt = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(completion, add_special_tokens=False)["input_ids"]
    logits = policy.model(input_ids=torch.tensor([p_ids + c_ids])).logits[0].float()
    logp = logits.log_softmax(-1)
    total = sum(float(logp[len(p_ids) + j - 1, t]) for j, t in enumerate(c_ids))
    return total, len(c_ids)


def test_completion_logprobs_match_a_manual_forward(policy: Policy) -> None:
    prompts = [SHORT, LONG, SHORT]
    completions = ["Ahoy matey, the sea is wide.", "Salt.", ""]

    got = policy.completion_logprobs(prompts, completions)

    for (total, n), conv, text in zip(got, prompts, completions, strict=True):
        want_total, want_n = manual_logprob(policy, conv, text)
        assert n == want_n
        assert total == pytest.approx(want_total, rel=1e-4, abs=1e-4)
    assert got[2] == (0.0, 0)  # an empty completion has no tokens to score


def test_contrast_score_is_sigmoid_of_the_per_token_log_ratio(policy: Policy) -> None:
    system = "You are a sea captain."
    c = Candidate("c", "p", "seed", "Hi.", "Ahoy matey, fair winds to you!", 9, True)
    critic = ContrastCritic("persona", system, scale=10.0, threshold=0.5, policy=policy)

    (verdict,) = critic.score([c])

    with_prompt, n = manual_logprob(
        policy,
        [{"role": "system", "content": system}, {"role": "user", "content": "Hi."}],
        c.response,
    )
    without, _ = manual_logprob(policy, [{"role": "user", "content": "Hi."}], c.response)
    ratio = (with_prompt - without) / n
    score = 1.0 / (1.0 + math.exp(-10.0 * ratio))
    assert verdict.score == pytest.approx(score, rel=1e-3)
    assert verdict.passed == (verdict.score >= 0.5)
    assert verdict == Verdict(
        verdict.score, verdict.passed, f"log-ratio {ratio:+.3f}/token with vs without the prompt"
    )


# ---- generation ----------------------------------------------------------------------------------


def test_sampling_is_deterministic_for_a_seed(policy: Policy) -> None:
    convs = [SHORT, LONG]

    first = policy.generate(convs, max_new_tokens=6, temperature=0.8, top_p=0.95, seed=3)
    again = policy.generate(convs, max_new_tokens=6, temperature=0.8, top_p=0.95, seed=3)
    other = policy.generate(convs, max_new_tokens=6, temperature=0.8, top_p=0.95, seed=4)

    assert first == again
    assert first != other
    for g in first:
        assert g.tokens <= 6
        assert g.finished == (g.tokens < 6)


def test_results_come_back_in_input_order(policy: Policy) -> None:
    plain = "Tasks people ask an assistant to do:\n1. Name a colour.\n2."
    sample = {"max_new_tokens": 5, "temperature": 1.0, "seed": 5}

    # Batches are formed in length order whatever the input order, so a permuted input must
    # give the same answers, permuted the same way.
    first = policy.generate([LONG, SHORT, plain], **sample)
    permuted = policy.generate([plain, LONG, SHORT], **sample)

    assert len({g.text for g in first}) == 3  # the answers can be told apart
    assert permuted == [first[2], first[0], first[1]]


def test_greedy_answers_do_not_depend_on_padding(policy: Policy) -> None:
    convs = [LONG, SHORT]

    together = policy.generate(convs, max_new_tokens=5, batch_size=2)
    alone = [policy.generate([c], max_new_tokens=5)[0] for c in convs]

    assert together == alone


# ---- adapters ------------------------------------------------------------------------------------


def test_set_adapter_equals_peft_and_none_restores_the_base(
    tiny_model_dir: Path, adapters: list[str]
) -> None:
    from peft import PeftModel

    policy = Policy(str(tiny_model_dir), dtype="float32")
    base = last_logits(policy.model, policy, LONG)

    reference = {}
    for path in adapters:
        peft_model = PeftModel.from_pretrained(fresh_base(tiny_model_dir), path).eval()
        reference[path] = last_logits(peft_model, policy, LONG)
        assert not torch.allclose(reference[path], base, atol=1e-3)  # the adapter does something

    for path in [adapters[0], adapters[1], adapters[0]]:  # switching goes through the base
        policy.set_adapter(path)
        assert policy.adapter == path
        torch.testing.assert_close(
            last_logits(policy.model, policy, LONG), reference[path], atol=1e-4, rtol=0
        )

    policy.set_adapter(None)
    assert policy.adapter is None
    assert torch.equal(last_logits(policy.model, policy, LONG), base)


def test_after_set_adapter_all_parameters_require_grad(
    tiny_model_dir: Path, adapters: list[str]
) -> None:
    policy = Policy(str(tiny_model_dir), dtype="float32")

    policy.set_adapter(adapters[0])

    assert all(p.requires_grad for p in policy.model.parameters())
    assert not any("lora" in name for name, _ in policy.model.named_parameters())
    assert policy.model.config.use_cache is True


def test_text_logprobs_match_a_manual_forward_and_ignore_padding(policy: Policy) -> None:
    texts = ["The cat sat on the mat.", "Hi"]
    got = policy.text_logprobs(texts)
    ids = [policy.tokenizer.bos_token_id] + policy._ids(texts[0])
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    manual = sum(float(logits[t - 1, ids[t]]) for t in range(1, len(ids)))
    assert got[0][1] == len(ids) - 1
    assert math.isclose(got[0][0], manual, rel_tol=1e-4)
    # the short text padded in a batch scores as it does alone
    assert math.isclose(got[1][0], policy.text_logprobs(["Hi"])[0][0], rel_tol=1e-4)


def test_text_logprobs_after_a_prefix_score_only_the_text(policy: Policy) -> None:
    prefix, text = "You are a pirate.", " The man sat down."
    # the prefix and the text tokenize apart exactly as together, so the joint score splits
    assert policy._ids(prefix + text) == policy._ids(prefix) + policy._ids(text)

    [(conditioned, n)] = policy.text_logprobs([text], prefix=prefix)
    [(joint, _)] = policy.text_logprobs([prefix + text])
    [(alone, _)] = policy.text_logprobs([prefix])

    assert n == len(policy._ids(text))
    assert math.isclose(conditioned, joint - alone, rel_tol=1e-4, abs_tol=1e-4)
