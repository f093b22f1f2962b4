import json
import math

import pytest
import torch

from generators.pool import load_prompts, normalise
from loop.explain import (
    adapter_update_norms,
    answer_change,
    changed_probes,
    explain,
    layer_norms,
    load_probes,
    probe_kl,
)
from loop.policy import Policy

PROBES = ["What is the capital of Japan?", "Name a fruit.", "Say hello."]
ANSWERS = ["The capital of Japan is Tokyo.", "An apple.", "Hello there!"]


def talking(policy):
    """The tiny random model greedily emits newlines, which decode to an empty answer; barred
    from blank tokens, it answers with words, as a real model does."""
    tok = policy.tokenizer
    pieces = tok.batch_decode([[i] for i in range(len(tok))])
    blank = [i for i, piece in enumerate(pieces) if not piece.strip()]
    policy.model.generation_config.suppress_tokens = blank
    return policy


def save_adapter(model_dir, folder, rslora=False, update=None):
    """A LoRA adapter (r=2, alpha=4, q and v projections) on the tiny model; `update` sets its
    weights before saving, else it is fresh (B = 0, no change to the model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], use_rslora=rslora)
    peft_model = get_peft_model(model, lora)
    if update is not None:
        with torch.no_grad():
            update(peft_model)
    peft_model.save_pretrained(folder)
    return str(folder)


def set_q0(peft_model):
    # delta W = B @ A has 3 at (0, 0) and 4 at (1, 1): Frobenius norm 5 before scaling.
    q = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    a, b = q.lora_A["default"].weight, q.lora_B["default"].weight  # (2, 32), (32, 2)
    a.zero_()
    b.zero_()
    a[0, 0], a[1, 1] = 1.0, 2.0
    b[0, 0], b[1, 1] = 3.0, 2.0


def perturb(peft_model):
    gen = torch.Generator().manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.copy_(torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {
        "fresh": save_adapter(tiny_model_dir, root / "fresh"),
        "perturbed": save_adapter(tiny_model_dir, root / "perturbed", update=perturb),
    }


@pytest.mark.parametrize(("rslora", "scale"), [(False, 4 / 2), (True, 4 / math.sqrt(2))])
def test_update_norms_match_a_hand_computed_delta(tiny_model_dir, tmp_path, rslora, scale):
    folder = save_adapter(tiny_model_dir, tmp_path / "a", rslora=rslora, update=set_q0)
    norms = adapter_update_norms(folder)
    assert set(norms) == {
        f"layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")
    }
    assert norms["layers.0.self_attn.q_proj"] == pytest.approx(5 * scale)
    assert norms["layers.1.self_attn.q_proj"] == 0.0  # fresh LoRA: B = 0
    assert layer_norms(norms) == {"layers.0": pytest.approx(5 * scale), "layers.1": 0.0}


def test_update_norms_refuse_dora(tiny_model_dir, tmp_path):
    folder = save_adapter(tiny_model_dir, tmp_path / "a")
    config = tmp_path / "a" / "adapter_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"use_dora": True}))
    with pytest.raises(NotImplementedError, match="DoRA"):
        adapter_update_norms(folder)


def test_layer_norms_sort_layers_numerically():
    norms = {"layers.10.mlp.up_proj": 1.0, "layers.9.mlp.up_proj": 2.0, "lm_head": 0.5}
    assert list(layer_norms(norms)) == ["layers.9", "layers.10", "lm_head"]


def test_kl_is_zero_for_a_fresh_adapter_and_positive_for_a_perturbed_one(tiny_model_dir, adapters):
    policy = Policy(str(tiny_model_dir), "float32")
    fresh = probe_kl(policy, adapters["fresh"], PROBES, ANSWERS)
    assert fresh["kl"]["n"] == len(PROBES)
    assert fresh["kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
    # Start on the adapter: the arms are scored in the other order, with the same result.
    policy.set_adapter(adapters["perturbed"])
    moved = probe_kl(policy, adapters["perturbed"], PROBES, ANSWERS)
    assert all(k > 1e-3 for k in moved["per_probe"])
    # An empty answer has no tokens to compare on: left out, not counted as zero.
    partial = probe_kl(policy, adapters["perturbed"], PROBES, ["", *ANSWERS[1:]])
    assert partial["per_probe"][0] is None and partial["kl"]["n"] == 2
    policy.set_adapter(None)
    again = probe_kl(policy, adapters["perturbed"], PROBES, ANSWERS)
    assert again["per_probe"] == pytest.approx(moved["per_probe"], rel=1e-5)


def test_changed_probes_order_by_rouge_change():
    base = ["the cat sat", "a b c d", "same words"]
    tuned = ["the cat sat", "a b x y", "other text"]
    # ROUGE-L F1: identical 1; "a b" shared of 4 and 4 tokens: 0.5; nothing shared: 0.
    assert [answer_change(b, a) for b, a in zip(base, tuned, strict=True)] == [0.0, 0.5, 1.0]
    top = changed_probes(base, tuned, k=2, probes=["p0", "p1", "p2"])
    assert [(r["index"], r["change"], r["probe"]) for r in top] == [
        (2, 1.0, "p2"),
        (1, 0.5, "p1"),
    ]
    assert top[0]["base"] == "same words" and top[0]["adapter"] == "other text"
    assert answer_change("", "") == 0.0


def test_explain_reports_everything_and_restores_the_policy(tiny_model_dir, adapters):
    policy = talking(Policy(str(tiny_model_dir), "float32"))
    report = explain(policy, adapters["perturbed"], PROBES, max_new_tokens=6, k=2)
    assert policy.adapter is None
    json.dumps(report)  # JSON-ready as it is
    assert report["kl"]["n"] == 3 and report["kl"]["mean"] > 0
    assert len(report["per_probe"]) == 3 and len(report["changed"]) == 2
    assert report["update_norm"]["sum"] > 0 and set(report["update_norm"]["layers"]) == {
        "layers.0",
        "layers.1",
    }


def test_panel_computes_retention_and_explanation(tiny_model_dir, embedder_dir, adapters):
    from critics.panel import CriticPanel

    panel = CriticPanel({}, str(tiny_model_dir), embedder_dir, "float32")
    talking(panel.policy)
    report = panel.explain(adapters["fresh"], max_new_tokens=4, k=3)
    assert report["kl"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert report["answer_change"]["mean"] == 0.0  # no update: the same greedy answers
    assert report["update_norm"]["sum"] == 0.0
    assert len(report["per_probe"]) == len(load_probes())
    figures = panel.retention(adapters["fresh"])
    assert figures["mc"]["accuracy"]["n"] == 40 and panel.policy.adapter == adapters["fresh"]


def test_shipped_probes_are_not_held_out_prompts(heldout_file):
    probes = load_probes()
    assert len(probes) >= 16 and len(set(probes)) == len(probes)
    held = {normalise(p.instruction) for p in load_prompts(heldout_file, "heldout", "heldout")}
    assert not held & {normalise(p) for p in probes}


def test_full_model_update_norms_are_the_weight_changes(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from loop.explain import full_update_norms

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight.add_(0.5)  # every entry moves by 0.5
    model.save_pretrained(tmp_path / "full")

    norms = full_update_norms(base, tmp_path / "full")

    shape = model.model.layers[1].self_attn.q_proj.weight.shape
    assert norms["layers.1.self_attn.q_proj"] == pytest.approx(0.5 * (shape[0] * shape[1]) ** 0.5)
    assert norms["layers.0.self_attn.q_proj"] == 0.0
