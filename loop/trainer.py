"""Training the policy with TRL: SFT on a round's survivors, DPO on its preference pairs, or SFT
then DPO, as a LoRA adapter (strategies lora and qlora) or on every weight (strategy full).

The base model is loaded once per trainer actor; each LoRA round wraps it in a PEFT model (a fresh
LoRA, or the previous adapter made trainable), trains, saves the adapter, and unloads the LoRA
layers again so the next round starts from the untouched base. A full round trains a copy: the
base's weights, or the previous full round's saved ones.

DPO's reference under LoRA is a second, frozen adapter named "ref" on the same PEFT model, which
TRL's DPOTrainer (1.16) switches to for the reference pass; with no "ref" adapter it disables the
adapters instead, which gives the base. No second copy of the model is held. Full fine-tuning
has nothing to switch off, so its reference is a frozen copy of the base or the previous model.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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

from loop.chat_template import TemplateReport, check_examples, check_pairs
from loop.config import TrainConfig
from loop.errors import UserError
from loop.store import replace_dir
from loop.strategy import (
    PeakMemory,
    check_strategy,
    folder_bytes,
    is_full_model,
    trainable_parameters,
)

log = logging.getLogger(__name__)

REF = "ref"  # the adapter name TRL's DPOTrainer uses for the reference policy


@dataclass(frozen=True)
class TrainResult:
    examples: int  # SFT rows trained on, after the chat-template checks
    steps: int  # optimiser steps over all phases
    loss: float  # mean training loss of the last phase that ran; nan when none ran
    losses: list[float]  # per logged step, all phases in order
    diverged: bool  # a NaN or infinite loss stopped training
    seconds: float
    adapter: str | None  # None when training diverged or did not run, and nothing was saved
    method: str = "sft"
    trained: bool = True  # False: the method had no rows to train on
    pairs: int = 0  # preference pairs trained on, after the chat-template checks
    sft_loss: float | None = None  # mean loss of each phase that ran
    dpo_loss: float | None = None
    dpo: dict[str, float] = field(default_factory=dict)  # last logged rewards/* and logps/*
    checks: dict[str, int] = field(default_factory=dict)  # "sft/eos": rows dropped, and so on
    # What the strategy cost. Memory is the trainer process's resident set size, sampled every
    # 0.05 s from building the model to saving it (loop.strategy.PeakMemory).
    strategy: str = "lora"
    trainable_params: int = 0
    peak_rss_bytes: int = 0  # highest RSS while training
    rss_rise_bytes: int = 0  # that peak less the RSS when training began
    peak_gpu_bytes: int = 0  # torch's peak CUDA allocation; 0 on CPU
    fit_seconds: float = 0.0  # inside TRL's train() calls only
    saved_bytes: int = 0  # size on disk of the saved folder; 0 when nothing was saved


class _Watch(TrainerCallback):
    """Records progress for the driver and stops training on a non-finite loss."""

    def __init__(self) -> None:
        self.done = 0  # steps of the phases before the one in flight
        self.step = 0
        self.total = 0
        self.losses: list[float] = []
        self.diverged = False
        self.dpo: dict[str, float] = {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (TRL's signature)
        self.step, self.total = self.done + state.global_step, self.done + state.max_steps

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.done = self.step

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        logs = logs or {}
        self.dpo |= {k: float(v) for k, v in logs.items() if k.startswith(("rewards/", "logps/"))}
        loss = logs.get("loss")
        if loss is None:
            return
        self.losses.append(float(loss))
        if not math.isfinite(loss):
            self.diverged = True
            control.should_training_stop = True


def _common_args(cfg: TrainConfig, seed: int, scratch: str) -> dict[str, Any]:
    """TrainingArguments shared by the SFT and the DPO phase."""
    return {
        "output_dir": scratch,
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "logging_steps": 1,
        # the default hides NaN and inf losses from the logs, where the watch looks
        "logging_nan_inf_filter": False,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": not torch.cuda.is_available(),
        # a 135M model needs no activation checkpointing, and it turns the KV cache off
        "activation_checkpointing": False,
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,
        "bf16": False,
    }


def _set_reference(model: Any, adapter: str | None) -> None:
    """Make `adapter` (None: the base) the policy DPO measures against."""
    # Given a PEFT model, DPOTrainer copies the adapter in training into "ref": the policy as
    # DPO starts, which after an SFT phase is neither the base nor the previous round's policy.
    if REF in model.peft_config:
        model.delete_adapter(REF)
    if adapter and is_full_model(adapter):
        raise UserError(
            f"the DPO reference {adapter} is a fully fine-tuned model, which a LoRA cannot "
            "measure against: set train.reference = 'base', or train.strategy = 'full'"
        )
    if adapter:
        model.load_adapter(adapter, adapter_name=REF, is_trainable=False)


def _rate(cfg: TrainConfig, phase: str) -> float:
    """The phase's learning rate: training every weight takes a far smaller step than a LoRA."""
    if cfg.strategy == "full":
        return cfg.full_learning_rate if phase == "sft" else cfg.full_dpo_learning_rate
    return cfg.learning_rate if phase == "sft" else cfg.dpo_learning_rate


def _counts(kind: str, report: TemplateReport) -> dict[str, int]:
    return {f"{kind}/{problem}": n for problem, n in report.problems.items()}


class Trainer:
    def __init__(
        self, model_path: str, threads: int | None = None, trust_remote_code: bool = False
    ):
        if threads:
            torch.set_num_threads(threads)
        self.model_path = model_path
        self.trust_remote_code = trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=trust_remote_code
        )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.base = self._load(model_path)
        self._quantized: Any = None  # the 4-bit base of strategy qlora, loaded when first used
        self._watch = _Watch()
        self._tensorboard: Path | None = None

    def _callbacks(self, phase: str) -> list[Any]:
        """The step watch, and with train.tensorboard a writer to <round>/tensorboard/<phase>.
        transformers 5 has no logging_dir argument, so the writer is handed over directly."""
        if self._tensorboard is None:
            return [self._watch]
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        writer = SummaryWriter(log_dir=str(self._tensorboard / phase))
        return [self._watch, TensorBoardCallback(writer)]

    def _load(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("dtype", torch.float32)
        return AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=self.trust_remote_code, **kwargs
        )

    def progress(self) -> tuple[int, int]:
        """(steps done, steps planned) of the training in flight; a DPO phase adds its steps."""
        return self._watch.step, self._watch.total

    # ---- the model each strategy trains ---------------------------------------------------

    def _lora_base(self, cfg: TrainConfig) -> Any:
        if cfg.strategy != "qlora":
            return self.base
        if self._quantized is None:
            from peft import prepare_model_for_kbit_training
            from transformers import BitsAndBytesConfig

            quant = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
            model = self._load(self.model_path, quantization_config=quant, device_map={"": 0})
            self._quantized = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=False
            )
        return self._quantized

    def _peft_model(self, cfg: TrainConfig, start_adapter: str | None) -> Any:
        from peft import LoraConfig, PeftModel, get_peft_model

        base = self._lora_base(cfg)
        if start_adapter:
            if is_full_model(start_adapter):
                raise UserError(
                    f"the previous round was fully fine-tuned ({start_adapter}), and a LoRA "
                    f"cannot continue it: set train.strategy = 'full', or train.start = 'fresh'"
                )
            return PeftModel.from_pretrained(base, start_adapter, is_trainable=True)
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
            task_type="CAUSAL_LM",
        )
        return get_peft_model(base, lora)

    def _full_model(self, folder: str | None, trainable: bool) -> Any:
        """A copy of the base (folder None), a saved full model, or the base with a saved
        adapter merged in, as a model of its own; the held base is never touched."""
        if folder is not None and is_full_model(folder):
            model = self._load(folder)
        else:
            model = copy.deepcopy(self.base)
            if folder is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, folder).merge_and_unload()
        model.requires_grad_(trainable)
        return model.train(trainable)

    # ---- phases ---------------------------------------------------------------------------
    def _fit_sft(self, model: Any, rows: list[dict[str, Any]], cfg: TrainConfig, seed: int) -> Any:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        with tempfile.TemporaryDirectory(prefix="selfloop-trl-") as scratch:
            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(learning_rate=_rate(cfg, "sft"), **_common_args(cfg, seed, scratch)),
                train_dataset=Dataset.from_list(rows),
                processing_class=self.tokenizer,
                callbacks=self._callbacks("sft"),
            )
            trainer.remove_callback(PrinterCallback)  # the driver shows progress; logs go to files
            return trainer.train()

    def _fit_dpo(
        self,
        model: Any,
        rows: list[dict[str, Any]],
        cfg: TrainConfig,
        seed: int,
        reference: str | None,
    ) -> Any:
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        args = {"learning_rate": _rate(cfg, "dpo"), "beta": cfg.dpo_beta}
        # LoRA measures against an adapter on the same model; full needs a model of its own.
        lora = hasattr(model, "peft_config")
        ref_model = None if lora else self._full_model(reference, trainable=False)
        with tempfile.TemporaryDirectory(prefix="selfloop-trl-") as scratch:
            try:
                trainer = DPOTrainer(
                    model=model,
                    ref_model=ref_model,
                    args=DPOConfig(**args, **_common_args(cfg, seed, scratch)),
                    train_dataset=Dataset.from_list(rows),
                    processing_class=self.tokenizer,
                    callbacks=self._callbacks("dpo"),
                )
                trainer.remove_callback(PrinterCallback)
                if lora:
                    _set_reference(model, reference)
                return trainer.train()
            finally:
                if lora and REF in model.peft_config:
                    model.delete_adapter(REF)
                # DPOTrainer patches the base's forward with a fused log-prob head; drop it, so
                # the base the next round wraps is the one loaded, and a saved model is plain.
                vars(model.get_base_model() if lora else model).pop("forward", None)

    def _checked(
        self, examples: Sequence[dict[str, Any]], pairs: Sequence[dict[str, Any]], cfg: TrainConfig
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
        """The rows each phase of the method trains on, after the chat-template checks."""
        ends = self.base.generation_config.eos_token_id
        ends = [ends] if isinstance(ends, int) else list(ends or [])
        sft, dpo, checks = [], [], {}
        if cfg.method in ("sft", "sft+dpo"):
            sft, report = check_examples(examples, self.tokenizer, cfg.max_length, ends)
            sft = [{"prompt": r["prompt"], "completion": r["completion"]} for r in sft]
            checks |= _counts("sft", report)
        if cfg.method in ("dpo", "sft+dpo"):
            dpo, report = check_pairs(pairs, self.tokenizer, cfg.max_length, ends)
            dpo = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in dpo]
            checks |= _counts("dpo", report)
        return sft, dpo, checks

    def _save(self, model: Any, final: Path) -> str:
        tmp = final.with_name(f".{final.name}.tmp")
        model.save_pretrained(str(tmp))
        if not hasattr(model, "peft_config"):
            self.tokenizer.save_pretrained(str(tmp))  # a full model folder loads on its own
        replace_dir(tmp, final)
        return str(final)

    def train(
        self,
        examples: Sequence[dict[str, Any]],  # TRL prompt/completion rows (survivors)
        cfg: TrainConfig,
        out_dir: str,
        previous_adapter: str | None = None,
        seed: int = 0,
        pairs: Sequence[dict[str, Any]] | None = None,  # TRL prompt/chosen/rejected rows
    ) -> TrainResult:
        """Train cfg.method with cfg.strategy and save to out_dir: a PEFT adapter (lora, qlora)
        or a whole model (full).

        previous_adapter is the last accepted round's adapter (None before any): cfg.start says
        whether training continues from it, cfg.reference whether DPO measures against it.
        """
        check_strategy(cfg.strategy)
        started = time.perf_counter()
        sft_rows, dpo_rows, checks = self._checked(examples, pairs or [], cfg)
        self._watch = _Watch()
        self._tensorboard = Path(out_dir).parent / "tensorboard" if cfg.tensorboard else None
        if not sft_rows and not dpo_rows:
            return self._result(cfg, {}, [], [], checks, None, started)
        # The new LoRA's initial weights come from the global generator: seed it, so that a
        # round trained again after a crash starts from the same weights.
        set_seed(seed)
        start = previous_adapter if cfg.start == "previous" else None
        reference = previous_adapter if cfg.reference == "previous" else None
        with PeakMemory() as memory:
            if cfg.strategy == "full":
                model = self._full_model(start, trainable=True)
            else:
                model = self._peft_model(cfg, start)
            cost = {"trainable_params": trainable_parameters(model)}
            try:
                began = time.perf_counter()
                outputs = self._fit(model, sft_rows, dpo_rows, cfg, seed, reference)
                cost["fit_seconds"] = time.perf_counter() - began
                adapter = None if self._watch.diverged else self._save(model, Path(out_dir))
            finally:
                self._release(model, cfg)
        cost |= {
            "peak_rss_bytes": memory.rss_bytes,
            "rss_rise_bytes": memory.rss_bytes - memory.start_bytes,
            "peak_gpu_bytes": memory.gpu_bytes,
            "saved_bytes": folder_bytes(adapter) if adapter else 0,
        }
        return self._result(cfg, outputs, sft_rows, dpo_rows, checks, adapter, started, cost)

    def _fit(
        self,
        model: Any,
        sft_rows: list[dict[str, Any]],
        dpo_rows: list[dict[str, Any]],
        cfg: TrainConfig,
        seed: int,
        reference: str | None,
    ) -> dict[str, Any]:
        """Run the method's phases on `model`; TRL's output per phase that ran."""
        outputs = {}
        if sft_rows:
            outputs["sft"] = self._fit_sft(model, sft_rows, cfg, seed)
        if dpo_rows and not self._watch.diverged:
            outputs["dpo"] = self._fit_dpo(model, dpo_rows, cfg, seed, reference)
        return outputs

    def _release(self, model: Any, cfg: TrainConfig) -> None:
        """Hand the base back untouched: drop the LoRA layers (never merged) from the held base;
        a full round trained a copy, which is simply let go."""
        if cfg.strategy == "qlora":
            self._quantized = model.unload()
        elif cfg.strategy == "lora":
            self.base = model.unload()

    def _result(
        self,
        cfg: TrainConfig,
        outputs: dict[str, Any],
        sft_rows: list[dict[str, Any]],
        dpo_rows: list[dict[str, Any]],
        checks: dict[str, int],
        adapter: str | None,
        started: float,
        cost: dict[str, Any] | None = None,
    ) -> TrainResult:
        losses = {phase: float(out.training_loss) for phase, out in outputs.items()}
        return TrainResult(
            examples=len(sft_rows) if "sft" in outputs else 0,
            steps=sum(out.global_step for out in outputs.values()),
            loss=list(losses.values())[-1] if losses else math.nan,
            losses=self._watch.losses,
            diverged=self._watch.diverged,
            seconds=time.perf_counter() - started,
            adapter=adapter,
            method=cfg.method,
            trained=bool(outputs),
            pairs=len(dpo_rows) if "dpo" in outputs else 0,
            sft_loss=losses.get("sft"),
            dpo_loss=losses.get("dpo"),
            dpo=self._watch.dpo,
            checks=checks,
            strategy=cfg.strategy,
            **(cost or {}),
        )
