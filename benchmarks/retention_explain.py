"""Retention and explanation figures of the default model, and of an adapter trained to answer
every prompt with one fixed pirate line (a fine-tune that should show up clearly in every view).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/retention_explain.py [--tokens 96]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from generators.pool import load_prompts
from loop.config import TrainConfig
from loop.explain import explain, load_probes
from loop.models import SMOLLM2, resolve_model
from loop.policy import Policy
from loop.retention import compare, load_passages, load_questions, multiple_choice, perplexity
from loop.stats import fmt
from loop.trainer import Trainer

PIRATE = "Arr, matey! Ye be askin' a fine question, and a pirate answers it with a hearty yo-ho-ho."


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label} | {time.perf_counter() - start:.1f}s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=96)
    args = ap.parse_args()
    torch.set_num_threads(2)
    path = resolve_model(SMOLLM2)
    policy = Policy(path, "bfloat16")
    passages, questions = load_passages(), load_questions()

    base = {
        "text": timed("base perplexity", lambda: perplexity(policy, passages)),
        "mc": timed("base multiple choice", lambda: multiple_choice(policy, questions)),
    }
    print(f"base | perplexity {fmt(base['text']['perplexity'])} | mc {fmt(base['mc']['accuracy'])}")

    seeds = load_prompts("generators/data/seeds.jsonl", "seed", "seeds")[: args.examples]
    rows = [
        {
            "prompt": [{"role": "user", "content": s.instruction}],
            "completion": [{"role": "assistant", "content": PIRATE}],
        }
        for s in seeds
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(path, 2)
        result = timed(
            "train", lambda: trainer.train(rows, TrainConfig(epochs=args.epochs), f"{tmp}/adapter")
        )
        print(f"train | {result.examples} examples | {result.steps} steps | loss {result.loss:.3f}")
        policy.set_adapter(result.adapter)
        tuned = {
            "text": timed("adapter perplexity", lambda: perplexity(policy, passages)),
            "mc": timed("adapter multiple choice", lambda: multiple_choice(policy, questions)),
        }
        figures = compare(base, tuned)
        print(
            f"adapter | perplexity {fmt(figures['adapter']['perplexity'])} "
            f"| mc {fmt(figures['adapter']['mc'])}"
        )
        print(
            f"paired | perplexity ratio {fmt(figures['perplexity_ratio'])} "
            f"| mc change {fmt(figures['mc_change'])}"
        )
        report = timed(
            f"explain ({len(load_probes())} probes, {args.tokens} tokens)",
            lambda: explain(policy, result.adapter, load_probes(), args.tokens, k=3),
        )
    print(
        f"explain | kl {fmt(report['kl'], 4)} | answer change {fmt(report['answer_change'])} "
        f"| update norm sum {report['update_norm']['sum']:.3f}"
    )
    layers = report["update_norm"]["layers"]
    print("layers | " + " ".join(f"{k}={v:.3f}" for k, v in layers.items()))
    print(json.dumps(report["changed"][:2], indent=1))


if __name__ == "__main__":
    main()
