"""LoRA SFT on the tiny Llama: the adapter is saved and learnt something, the base stays
untouched, and a second round continues from the first round's adapter."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from loop.config import TrainConfig
from loop.trainer import Trainer

ROWS = [
    {
        "prompt": [{"role": "user", "content": f"What should I pack for trip number {i}?"}],
        "completion": [{"role": "assistant", "content": f"Ahoy matey, pack {i} warm jumpers!"}],
    }
    for i in range(8)
]
CFG = TrainConfig(
    epochs=1,
    batch_size=4,
    learning_rate=1e-2,
    max_length=64,
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    target_modules=["q_proj", "v_proj"],
)


def adapter_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One trainer, the base weights before training, and two chained training runs."""
    trainer = Trainer(str(tiny_model_dir), threads=2)
    before = {k: v.clone() for k, v in trainer.base.state_dict().items()}
    out = tmp_path_factory.mktemp("train")

    first = trainer.train(ROWS, CFG, str(out / "round_001"), seed=0)
    after_first = {k: v.clone() for k, v in trainer.base.state_dict().items()}
    # A learning rate this small moves no weight visibly: the second run shows where it started.
    second = trainer.train(
        ROWS,
        CFG.model_copy(update={"learning_rate": 1e-9}),
        str(out / "round_002"),
        previous_adapter=first.adapter,
        seed=1,
    )
    return {
        "trainer": trainer,
        "before": before,
        "after_first": after_first,
        "first": first,
        "second": second,
        "out": out,
    }


def test_result_fields(trained: dict) -> None:
    first = trained["first"]

    assert first.examples == 8
    assert first.steps == 2  # 8 rows / batch 4, one epoch
    assert len(first.losses) == 2  # logged every step
    assert all(math.isfinite(x) and x > 0 for x in first.losses)
    assert math.isfinite(first.loss)
    assert first.loss == pytest.approx(sum(first.losses) / 2, rel=1e-3)
    assert first.diverged is False
    assert first.seconds > 0
    assert first.adapter == str(trained["out"] / "round_001")
    assert trained["trainer"].progress() == (2, 2)


def test_adapter_opens_with_peft_and_its_weights_changed(
    trained: dict, tiny_model_dir: Path
) -> None:
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, trained["first"].adapter)

    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert len(lora_b) == 2 * 2  # q_proj and v_proj in each of 2 layers
    # PEFT starts lora_B at zero; after two optimiser steps none of them is.
    assert all(p.abs().max() > 0 for p in lora_b.values())
    assert not any(Path(trained["out"]).glob(".*.tmp"))


def test_base_weights_are_unchanged_by_training(trained: dict) -> None:
    for state in (trained["after_first"], trained["trainer"].base.state_dict()):
        assert state.keys() == trained["before"].keys()
        for name, value in trained["before"].items():
            assert torch.equal(state[name], value), name
    assert not any("lora" in n for n, _ in trained["trainer"].base.named_parameters())


def test_second_round_continues_from_the_first_adapter(trained: dict) -> None:
    first = adapter_weights(trained["first"].adapter)
    second = adapter_weights(trained["second"].adapter)

    assert trained["second"].steps == 2
    assert trained["second"].diverged is False
    assert first.keys() == second.keys()
    for name, value in first.items():
        torch.testing.assert_close(second[name], value, atol=1e-6, rtol=0)
    # not a fresh adapter: those start with every lora_B at zero
    assert all(second[n].abs().max() > 1e-3 for n in second if "lora_B" in n)


def test_non_finite_loss_stops_training_and_saves_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(str(tiny_model_dir), threads=2)
    with torch.no_grad():
        trainer.base.get_input_embeddings().weight.fill_(float("nan"))
    result = trainer.train(ROWS, CFG.model_copy(update={"epochs": 3.0}), str(tmp_path / "a"))
    assert result.diverged
    assert result.adapter is None and not (tmp_path / "a").exists()
    assert result.steps < 6  # stopped at the first non-finite loss, not after 3 epochs
    assert not math.isfinite(result.losses[-1])


def test_tensorboard_curves_go_to_the_round_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(str(tiny_model_dir), threads=2)
    cfg = CFG.model_copy(update={"tensorboard": True})
    trainer.train(ROWS, cfg, str(tmp_path / "round_001" / "adapter"), seed=0)
    (events,) = (tmp_path / "round_001" / "tensorboard" / "sft").glob("events.out.tfevents.*")
    curves = EventAccumulator(str(events)).Reload()
    assert len(curves.Scalars("train/loss")) == 2  # 8 rows / batch 4, logged every step


def test_tensorboard_needs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from pydantic import ValidationError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValidationError, match="pip install tensorboard"):
        TrainConfig(tensorboard=True)
    assert TrainConfig(tensorboard=False).tensorboard is False
