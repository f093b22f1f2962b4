"""Trainer tokens per second: selfloop's Trainer.train against a plain TRL script on the same data.

    nice -n 19 env HF_HUB_OFFLINE=1 python benchmarks/train_vs_trl.py [--rows 32] [--repeats 2]
        [--threads 2] [--seed 0]

Both arms train a LoRA SFT on the real default model (SmolLM2-135M-Instruct) with the [train]
section of the repo's config.toml over TrainConfig's defaults. The plain arm is what a reader
writes from TRL's documentation: SFTTrainer(model, SFTConfig, Dataset.from_list, LoraConfig) and
.train(), with the settings that change the computation set to selfloop's (batch size, epochs,
learning rate, max length, float32, seed, threads, LoRA r / alpha / dropout / targets, no
activation checkpointing) and TRL's defaults for the rest (logging, progress bar, callbacks,
completion-only loss, which both get from TRL's default for prompt/completion rows). The line
"settings apart" lists every SFTConfig field where the two arms differ.

Tokens are all the tokens of each tokenized sequence the model reads, prompt and completion
(TRL's input_ids after truncation to max_length; the batch padding not counted), times epochs;
the same count serves both arms, which train the same rows. "fit" times the trainer.train() call
alone (selfloop's TrainResult.fit_seconds); "whole" times from building the SFTTrainer, or
calling Trainer.train, to the saved adapter. Loading the model and tokenizer, which selfloop does
once per trainer actor, is outside both; "cpu" is the whole call's CPU time, and "loss" TRL's
mean training loss, equal in both arms when they compute the same thing.

One untimed plain step warms the process up first; then the arms alternate (plain, selfloop,
plain, ...) so that drift on a shared machine shows, and the ratio is the median over repeats of
selfloop / plain. On a machine busy with other work, OpenMP's spinning threads can make a step
several times slower for both arms; OMP_WAIT_POLICY=PASSIVE in the environment avoids that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, this checkout's packages come first

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from benchmarks.train_speed import rows  # noqa: E402
from loop.config import TrainConfig  # noqa: E402
from loop.models import SMOLLM2, resolve_model  # noqa: E402
from loop.trainer import Trainer, _common_args, _rate  # noqa: E402

TARGET = 0.95  # selfloop's tokens/s at least this share of the plain script's


@dataclass(frozen=True)
class Run:
    arm: str
    rows: int
    fit_seconds: float
    whole_seconds: float
    cpu_seconds: float  # the whole call's CPU time, all threads: less swayed by other load
    loss: float  # the same in both arms when they compute the same thing


def train_config() -> TrainConfig:
    """TrainConfig's defaults under the [train] section of the repo's config.toml."""
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    return TrainConfig(**tomllib.loads(text).get("train", {}))


def plain_args(cfg: TrainConfig, seed: int, out: str) -> SFTConfig:
    """The SFTConfig of the plain script, written field by field from TRL's documentation."""
    return SFTConfig(
        output_dir=out,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        bf16=False,  # float32 weights and arithmetic, as selfloop trains
        use_cpu=not torch.cuda.is_available(),
        # TRL turns activation checkpointing on by default, which recomputes the forward pass;
        # selfloop turns it off, and this compares the wrappers, not that choice
        activation_checkpointing=False,
        seed=seed,
        report_to="none",
    )


def plain_run(
    model_path: str, examples: list[dict[str, Any]], cfg: TrainConfig, seed: int, out: str
) -> tuple[Run, int]:
    """One plain TRL run; also the tokens per epoch of its tokenized dataset."""
    # A fresh base each run: SFTTrainer wraps the model it is given in LoRA layers in place.
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    set_seed(seed)  # the LoRA's initial weights, as selfloop seeds them

    started, cpu = time.perf_counter(), time.process_time()
    trainer = SFTTrainer(
        model=model,
        args=plain_args(cfg, seed, out),
        train_dataset=Dataset.from_list(
            [{"prompt": e["prompt"], "completion": e["completion"]} for e in examples]
        ),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        ),
    )
    began = time.perf_counter()
    loss = trainer.train().training_loss
    fit = time.perf_counter() - began
    trainer.save_model(out)
    whole, cpu = time.perf_counter() - started, time.process_time() - cpu

    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return Run("plain", len(trainer.train_dataset), fit, whole, cpu, loss), tokens


def selfloop_run(
    model_path: str,
    examples: list[dict[str, Any]],
    cfg: TrainConfig,
    seed: int,
    out: str,
    threads: int,
) -> Run:
    trainer = Trainer(model_path, threads=threads)  # loads the base once, as the actor does
    started, cpu = time.perf_counter(), time.process_time()
    result = trainer.train(examples, cfg, out, seed=seed)
    whole, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Run("selfloop", result.examples, result.fit_seconds, whole, cpu, result.loss)


def settings_apart(cfg: TrainConfig, seed: int) -> str:
    """Every SFTConfig field where the plain script's value is not selfloop's."""
    with tempfile.TemporaryDirectory() as out:
        plain = plain_args(cfg, seed, out).to_dict()
        ours = SFTConfig(learning_rate=_rate(cfg, "sft"), **_common_args(cfg, seed, out)).to_dict()
    apart = [f"{k} {plain[k]} (selfloop {ours[k]})" for k in sorted(ours) if plain[k] != ours[k]]
    return ", ".join(apart) or "none"


def line(run: Run, tokens: float) -> str:
    return (
        f"{run.arm:8s} | {run.rows} rows | {tokens:,.0f} tokens | fit {run.fit_seconds:.1f} s | "
        f"{tokens / run.fit_seconds:.1f} tokens/s | whole {run.whole_seconds:.1f} s "
        f"({tokens / run.whole_seconds:.1f} tokens/s) | cpu {run.cpu_seconds:.1f} s "
        f"| loss {run.loss:.4f}"
    )


def verdict(pairs: list[tuple[Run, Run]]) -> str:
    """The median over repeats of selfloop's tokens/s over the plain script's."""
    # Same tokens both arms, so the ratio of rates is the inverse ratio of times.
    fit = [p.fit_seconds / s.fit_seconds for p, s in pairs]
    whole = [p.whole_seconds / s.whole_seconds for p, s in pairs]
    cpu = [p.cpu_seconds / s.cpu_seconds for p, s in pairs]
    median = statistics.median(fit)
    runs = ", ".join(f"{r:.3f}" for r in fit)
    return (
        f"selfloop / plain | fit {median:.3f}x (runs {runs}) | "
        f"whole {statistics.median(whole):.3f}x | cpu {statistics.median(cpu):.3f}x | "
        f"target >= {TARGET}x on fit: "
        f"{'met' if median >= TARGET else 'missed'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = train_config()
    model_path = resolve_model(SMOLLM2)
    examples, _ = rows(args.rows)
    print(
        f"rows {args.rows} | repeats {args.repeats} | threads {args.threads} | "
        f"epochs {cfg.epochs} | batch {cfg.batch_size} | max_length {cfg.max_length} | "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"settings apart: {settings_apart(cfg, args.seed)}")

    pairs = []
    with tempfile.TemporaryDirectory() as out:
        # The first training in a process pays one-off costs (thread pools, kernels, the
        # optimiser's first step: seconds on a CPU) that would count against the plain arm.
        one_step = cfg.model_copy(update={"epochs": 1.0})
        warm, _ = plain_run(model_path, examples[: cfg.batch_size], one_step, args.seed, f"{out}/w")
        print(f"warm-up  | {warm.rows} rows | fit {warm.fit_seconds:.1f} s | not counted")
        for i in range(args.repeats):
            plain, per_epoch = plain_run(model_path, examples, cfg, args.seed, f"{out}/plain{i}")
            print(line(plain, per_epoch * cfg.epochs), flush=True)
            ours = selfloop_run(
                model_path, examples, cfg, args.seed, f"{out}/selfloop{i}", args.threads
            )
            if ours.rows != plain.rows:
                print(f"WARNING: selfloop trained {ours.rows} rows, the plain script {plain.rows}")
            print(line(ours, per_epoch * cfg.epochs), flush=True)
            pairs.append((plain, ours))
    print(verdict(pairs))


if __name__ == "__main__":
    main()
