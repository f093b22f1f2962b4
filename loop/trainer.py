"""LoRA SFT on a round's survivors with TRL's SFTTrainer, continuing from the previous adapter.

The base model is loaded once per trainer actor; each round wraps it in a PEFT model (a fresh
LoRA, or the previous adapter made trainable), trains, saves the adapter, and unloads the LoRA
layers again so the next round starts from the untouched base.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
    set_seed,
)

from loop.config import TrainConfig
from loop.store import replace_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    examples: int
    steps: int
    loss: float  # mean training loss over the run
    losses: list[float]  # per logged step
    diverged: bool  # a NaN or infinite loss stopped training
    seconds: float
    adapter: str | None  # None when training diverged and nothing was saved


class _Watch(TrainerCallback):
    """Records progress for the driver and stops training on a non-finite loss."""

    def __init__(self) -> None:
        self.step = 0
        self.total = 0
        self.losses: list[float] = []
        self.diverged = False

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (TRL's signature)
        self.step, self.total = state.global_step, state.max_steps

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.losses.append(float(loss))
        if not math.isfinite(loss):
            self.diverged = True
            control.should_training_stop = True


class Trainer:
    def __init__(
        self, model_path: str, threads: int | None = None, trust_remote_code: bool = False
    ):
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=trust_remote_code
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.base = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
        self._watch = _Watch()

    def progress(self) -> tuple[int, int]:
        """(steps done, steps planned) of the training in flight."""
        return self._watch.step, self._watch.total

    def _peft_model(self, cfg: TrainConfig, start_adapter: str | None) -> Any:
        from peft import LoraConfig, PeftModel, get_peft_model

        if start_adapter:
            return PeftModel.from_pretrained(self.base, start_adapter, is_trainable=True)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        )
        return get_peft_model(self.base, lora)

    def _fit(self, model: Any, rows: list[dict[str, Any]], cfg: TrainConfig, seed: int) -> Any:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        with tempfile.TemporaryDirectory(prefix="selfloop-trl-") as scratch:
            args = SFTConfig(
                output_dir=scratch,
                num_train_epochs=cfg.epochs,
                per_device_train_batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                max_length=cfg.max_length,
                logging_steps=1,
                # the default hides NaN and inf losses from the logs, where the watch looks
                logging_nan_inf_filter=False,
                save_strategy="no",
                report_to="none",
                use_cpu=not torch.cuda.is_available(),
                # a 135M model needs no activation checkpointing, and it turns the KV cache off
                activation_checkpointing=False,
                seed=seed,
                data_seed=seed,
                disable_tqdm=True,
                bf16=False,
            )
            trainer = SFTTrainer(
                model=model,
                args=args,
                train_dataset=Dataset.from_list(rows),
                processing_class=self.tokenizer,
                callbacks=[self._watch],
            )
            trainer.remove_callback(PrinterCallback)  # the driver shows progress; logs go to files
            return trainer.train()

    @staticmethod
    def _save(model: Any, final: Path) -> str:
        tmp = final.with_name(f".{final.name}.tmp")
        model.save_pretrained(str(tmp))
        replace_dir(tmp, final)
        return str(final)

    def train(
        self,
        examples: Sequence[dict[str, Any]],  # TRL prompt/completion rows
        cfg: TrainConfig,
        out_dir: str,
        start_adapter: str | None = None,
        seed: int = 0,
    ) -> TrainResult:
        started = time.perf_counter()
        rows = [{"prompt": e["prompt"], "completion": e["completion"]} for e in examples]
        # The new LoRA's initial weights come from the global generator: seed it, so that a
        # round trained again after a crash starts from the same weights.
        set_seed(seed)
        model = self._peft_model(cfg, start_adapter)
        self._watch = _Watch()
        try:
            output = self._fit(model, rows, cfg, seed)
            adapter = None if self._watch.diverged else self._save(model, Path(out_dir))
        finally:
            self.base = model.unload()  # drop the LoRA layers; base weights were never merged
        return TrainResult(
            examples=len(rows),
            steps=output.global_step,
            loss=float(output.training_loss),
            losses=self._watch.losses,
            diverged=self._watch.diverged,
            seconds=time.perf_counter() - started,
            adapter=adapter,
        )
