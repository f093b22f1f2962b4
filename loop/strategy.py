"""Training strategies: which weights a round trains, what its saved folder holds, what it costs.

- lora: a LoRA adapter on the float32 base; the round folder holds a PEFT adapter.
- full: every weight of a copy of the base; the round folder holds a whole model (safetensors,
  config and tokenizer) that plain transformers loads.
- qlora: a LoRA adapter on the base loaded in 4 bits by bitsandbytes, on a CUDA GPU only; the
  folder holds a PEFT adapter, applied to the unquantized base when the policy serves it.

A folder is told apart by its files: adapter_config.json is an adapter, config.json a model.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import torch

from loop.errors import UserError

QLORA_MISSING = "qlora needs bitsandbytes and a CUDA GPU"


def check_strategy(strategy: str) -> None:
    """Raise a UserError naming what this machine lacks for `strategy`; lora and full need
    nothing beyond the project's dependencies."""
    if strategy != "qlora":
        return
    missing = [
        what
        for what, present in (
            ("bitsandbytes is not installed", importlib.util.find_spec("bitsandbytes")),
            ("no CUDA GPU is visible to torch", torch.cuda.is_available()),
        )
        if not present
    ]
    if missing:
        # bitsandbytes (0.50) has a CPU 4-bit path too, but on CPU it only adds dequantizing to
        # every step: the memory it saves matters on a GPU, so selfloop runs qlora on CUDA only.
        raise UserError(
            f"{QLORA_MISSING} ({'; '.join(missing)}): pip install bitsandbytes on a machine "
            "with a CUDA GPU; or use strategy 'lora' (the same adapter on the float32 base)"
        )


def is_full_model(folder: str | Path) -> bool:
    """True for a whole saved model, False for a PEFT adapter; anything else is an error."""
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        return False
    if (folder / "config.json").is_file():
        return True
    raise UserError(
        f"{folder} holds neither a PEFT adapter (adapter_config.json) nor a saved model "
        "(config.json): give the round's adapter folder"
    )


def trainable_parameters(model: torch.nn.Module) -> int:
    """Elements that receive gradients; tied weights count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def folder_bytes(folder: str | Path) -> int:
    """Size on disk of the files under `folder`."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


class PeakMemory:
    """The highest resident set size (RSS) of this process while the block runs, sampled every
    `every` seconds on a thread (and at entry and exit), plus torch's peak CUDA allocation when a
    GPU is used. Sampling, unlike ru_maxrss, sees each round's own peak in a long-lived actor;
    it can miss a spike shorter than `every`."""

    def __init__(self, every: float = 0.05) -> None:
        import psutil  # a dependency of ray

        self._process = psutil.Process()
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_bytes = 0  # peak RSS in the block
        self.start_bytes = 0  # RSS at entry
        self.gpu_bytes = 0  # peak CUDA memory allocated by torch in the block; 0 without a GPU

    def _sample(self) -> None:
        self.rss_bytes = max(self.rss_bytes, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> PeakMemory:
        self.start_bytes = self._process.memory_info().rss
        self.rss_bytes = self.start_bytes
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if torch.cuda.is_available():
            self.gpu_bytes = int(torch.cuda.max_memory_allocated())
