"""What did a round's fine-tune change? Three views of one LoRA adapter against the base.

- where: the size of each module's weight update, read from the saved adapter alone;
- how much: the KL divergence of the adapted next-token distributions from the base's, on the
  base's own answers to a fixed set of probe prompts (teacher forcing, so both arms score the
  same tokens);
- what: the probes whose greedy answers changed most, with both answers side by side.

The probes (loop/data/probes.jsonl) are project-written and distinct from the held-out prompts.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rouge_score import rouge_scorer

from generators.pool import load_prompts
from loop.policy import Conversation, Policy
from loop.stats import estimate
from loop.strategy import is_full_model

PROBES = Path(__file__).parent / "data" / "probes.jsonl"
KL_TOKEN_BUDGET = 256  # answer tokens held at once as full distributions: ~50 MB per arm
_ROUGE = rouge_scorer.RougeScorer(["rougeL"])
_LAYER = re.compile(r"layers\.\d+")


def load_probes(path: str | Path = PROBES) -> list[str]:
    """The probe instructions, from lines of {"id", "instruction"}."""
    return [p.instruction for p in load_prompts(path, "probe", str(path))]


# ---- where: update norms --------------------------------------------------------------------


def _module_name(key: str) -> str:
    """'base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight' -> 'layers.3.self_attn.
    q_proj'; modules outside the layer stack keep their path below the wrapper."""
    name = key.split(".lora_")[0]
    start = name.find("layers.")
    if start >= 0:
        return name[start:]
    return name.removeprefix("base_model.model.").removeprefix("model.")


def adapter_update_norms(adapter_dir: str | Path) -> dict[str, float]:
    """Frobenius norm of each adapted module's weight update, delta W = B @ A * scale, with
    scale = lora_alpha / r (lora_alpha / sqrt(r) under rsLoRA). Reads only the saved files."""
    from safetensors.torch import load_file

    folder = Path(adapter_dir)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    if cfg.get("use_dora") or cfg.get("alpha_pattern"):
        raise NotImplementedError(
            "update norms cover plain LoRA with one lora_alpha; DoRA and alpha_pattern are not "
            "read: train without them to see per-module norms"
        )
    weights = load_file(folder / "adapter_model.safetensors")
    norms: dict[str, float] = {}
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        rank = a.shape[0]  # from the weights, so a rank_pattern override is honoured
        root = math.sqrt(rank) if cfg.get("use_rslora") else rank
        delta = b.double() @ a.double() * (cfg["lora_alpha"] / root)  # (out, in)
        norms[_module_name(key)] = float(torch.linalg.matrix_norm(delta))
    return dict(sorted(norms.items(), key=lambda kv: _natural(kv[0])))


def full_update_norms(base: dict[str, torch.Tensor], folder: str | Path) -> dict[str, float]:
    """For a fully fine-tuned model folder: the Frobenius norm of each layer matrix's change
    from the base weights `base` (parameter name -> tensor)."""
    from safetensors.torch import load_file

    norms: dict[str, float] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        for key, w in load_file(file).items():
            if w.ndim == 2 and "layers." in key and key in base:
                delta = w.double() - base[key].double()
                norms[_module_name(key.removesuffix(".weight"))] = float(
                    torch.linalg.matrix_norm(delta)
                )
    return dict(sorted(norms.items(), key=lambda kv: _natural(kv[0])))


def _natural(name: str) -> list[Any]:
    """Sort key that puts layers.10 after layers.9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def layer_norms(norms: dict[str, float]) -> dict[str, float]:
    """Sum of the module norms within each layer ('layers.3'); other modules stand alone."""
    sums: dict[str, float] = defaultdict(float)
    for name, value in norms.items():
        match = _LAYER.match(name)
        sums[match.group(0) if match else name] += value
    return dict(sorted(sums.items(), key=lambda kv: _natural(kv[0])))


# ---- how much: KL on the base's answers -----------------------------------------------------


def _conversations(probes: Sequence[str]) -> list[Conversation]:
    return [[{"role": "user", "content": p}] for p in probes]


def _chunks(policy: Policy, answers: Sequence[str]) -> list[list[int]]:
    """Probe indices in groups of about KL_TOKEN_BUDGET answer tokens, to bound memory."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, text in enumerate(answers):
        n = len(policy.tokenizer(text, add_special_tokens=False)["input_ids"])
        if groups[-1] and used + n > KL_TOKEN_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += n
    return groups


def _kl(adapted: torch.Tensor, base: torch.Tensor) -> float:
    """Mean over positions of KL(adapted || base), both (tokens, vocab) log-probabilities."""
    if adapted.shape[0] == 0:
        return float("nan")
    per_token = (adapted.exp() * (adapted - base)).sum(-1)  # (tokens,)
    return float(per_token.mean().clamp_min(0.0))  # rounding can dip a hair below zero


def probe_kl(
    policy: Policy, adapter: str, probes: Sequence[str], answers: Sequence[str]
) -> dict[str, Any]:
    """Per probe, the mean KL(base + adapter || base) over the tokens of `answers` (the base's
    answers), and its mean over probes with an interval. Probes with an empty answer are left
    out. The policy is left on whichever arm it scored last."""
    prompts = _conversations(probes)
    kls: list[float] = [math.nan] * len(probes)
    for group in _chunks(policy, answers):
        # Score the arm already loaded first, so a chunk costs one adapter switch, not two.
        arms = [adapter, None] if policy.adapter == adapter else [None, adapter]
        dists = {}
        for arm in arms:
            policy.set_adapter(arm)
            dists[arm] = policy.completion_distributions(
                [prompts[i] for i in group], [answers[i] for i in group]
            )
        for j, i in enumerate(group):
            kls[i] = _kl(dists[adapter][j], dists[None][j])
    scored = [k for k in kls if not math.isnan(k)]
    return {"kl": estimate(scored), "per_probe": [None if math.isnan(k) else k for k in kls]}


# ---- what: changed answers ------------------------------------------------------------------


def answer_change(base: str, adapted: str) -> float:
    """1 - ROUGE-L F1: 0 for the same answer, 1 for answers sharing no word sequence."""
    if base.strip() == adapted.strip():
        return 0.0
    return 1.0 - _ROUGE.score(base, adapted)["rougeL"].fmeasure


def changed_probes(
    base_answers: Sequence[str],
    adapter_answers: Sequence[str],
    k: int,
    probes: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The k probes whose answers changed most, most changed first (ties keep probe order);
    each with its index, change, both answers and, if given, the probe."""
    rows = [
        {"index": i, "change": answer_change(b, a), "base": b, "adapter": a}
        | ({"probe": probes[i]} if probes is not None else {})
        for i, (b, a) in enumerate(zip(base_answers, adapter_answers, strict=True))
    ]
    rows.sort(key=lambda r: -r["change"])
    return rows[:k]


# ---- all three ------------------------------------------------------------------------------


def explain(
    policy: Policy,
    adapter: str,
    probes: Sequence[str],
    max_new_tokens: int,
    k: int = 5,
) -> dict[str, Any]:
    """Everything above for one adapter, as JSON-ready data. The policy ends as it began."""
    start = policy.adapter
    prompts = _conversations(probes)
    policy.set_adapter(None)
    base = [g.text for g in policy.generate(prompts, max_new_tokens)]
    kl = probe_kl(policy, adapter, probes, base)
    policy.set_adapter(adapter)
    tuned = [g.text for g in policy.generate(prompts, max_new_tokens)]
    policy.set_adapter(start)
    if is_full_model(adapter):
        norms = full_update_norms(policy.base_weights, adapter)
    else:
        norms = adapter_update_norms(adapter)
    change = [answer_change(b, a) for b, a in zip(base, tuned, strict=True)]
    return {
        "kl": kl["kl"],
        "answer_change": estimate(change),
        "per_probe": [
            {"probe": p, "kl": q, "change": c, "base": b, "adapter": a}
            for p, q, c, b, a in zip(probes, kl["per_probe"], change, base, tuned, strict=True)
        ],
        "changed": changed_probes(base, tuned, k, probes),
        "update_norm": {
            "sum": float(np.sum(list(norms.values()))),
            "layers": layer_norms(norms),
            "modules": norms,
        },
    }
