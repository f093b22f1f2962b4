"""Training strategies on the tiny Llama: full fine-tuning saves a whole model that plain
transformers and the policy load, LoRA leaves the base alone, qlora refuses this CPU machine, and
every round records what it cost."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from loop.errors import UserError
from loop.policy import Policy
from loop.strategy import QLORA_MISSING, check_strategy, folder_bytes, is_full_model
from loop.trainer import Trainer
from tests.test_trainer import CFG, ROWS
from tests.test_trainer_dpo import LN2, PAIRS

FULL = CFG.model_copy(update={"strategy": "full", "full_learning_rate": 1e-2})
# q_proj (32 -> 32) and v_proj (32 -> 16: 2 key-value heads of 8) with r = 4, in 2 layers:
# (4*32 + 32*4) + (4*32 + 16*4) = 448 per layer.
LORA_PARAMS = 2 * 448


def saved(folder: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.fixture(scope="module")
def rounds(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    trainer = Trainer(str(tiny_model_dir), threads=2)
    before = {k: v.clone() for k, v in trainer.base.state_dict().items()}
    out = tmp_path_factory.mktemp("strategy")
    full = trainer.train(ROWS, FULL, str(out / "full"), seed=0)
    # A learning rate this small moves no weight visibly: the second run shows where it started.
    slow = FULL.model_copy(update={"full_learning_rate": 1e-9})
    again = trainer.train(ROWS, slow, str(out / "again"), previous_adapter=full.adapter, seed=1)
    lora = trainer.train(ROWS, CFG, str(out / "lora"), seed=0)
    return {
        "trainer": trainer,
        "before": before,
        "full": full,
        "again": again,
        "lora": lora,
    }


def test_full_saves_a_model_plain_transformers_loads(rounds: dict, tiny_model_dir: Path) -> None:
    folder = Path(rounds["full"].adapter)
    assert is_full_model(folder)
    files = {f.name for f in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    changed = [
        n
        for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(p, q)
    ]
    # two steps at 1e-2 move every matrix; the full model holds no LoRA weights
    assert len(changed) == len(list(base.parameters()))
    assert not any("lora" in n for n in saved(folder))
    assert "forward" not in vars(model)


def test_the_held_base_is_untouched_by_either_strategy(rounds: dict) -> None:
    state = rounds["trainer"].base.state_dict()
    assert state.keys() == rounds["before"].keys()
    for name, value in rounds["before"].items():
        assert torch.equal(state[name], value), name


def test_lora_saves_an_adapter_and_leaves_the_base_weights(rounds: dict) -> None:
    folder = Path(rounds["lora"].adapter)
    assert not is_full_model(folder)
    assert not (folder / "model.safetensors").exists()
    assert all("lora_" in n for n in load_file(str(folder / "adapter_model.safetensors")))


def test_a_second_full_round_starts_from_the_first(rounds: dict) -> None:
    first, second = saved(rounds["full"].adapter), saved(rounds["again"].adapter)
    assert first.keys() == second.keys()
    for name, value in first.items():
        torch.testing.assert_close(second[name], value, atol=1e-6, rtol=0)


def test_cost_fields(rounds: dict, tiny_model_dir: Path) -> None:
    full, lora = rounds["full"], rounds["lora"]
    every = sum(p.numel() for p in rounds["trainer"].base.parameters())

    assert (full.strategy, lora.strategy) == ("full", "lora")
    assert full.trainable_params == every
    assert lora.trainable_params == LORA_PARAMS
    for r in (full, lora):
        assert r.steps == 2
        assert 0 < r.fit_seconds <= r.seconds
        assert r.peak_rss_bytes > 0 and r.rss_rise_bytes >= 0
        assert r.peak_gpu_bytes == 0  # CPU
        assert r.saved_bytes == folder_bytes(r.adapter) > 0
    # the full model (float32, tied embeddings once) outweighs the adapter
    assert full.saved_bytes > 4 * every > lora.saved_bytes


def test_policy_loads_a_full_folder_and_goes_back_to_the_base(
    rounds: dict, tiny_model_dir: Path
) -> None:
    prompt = [[{"role": "user", "content": "What should I pack?"}]]
    folder = rounds["full"].adapter

    def logits(policy: Policy) -> torch.Tensor:
        with torch.no_grad():
            return policy.model(**policy._encode(prompt)).logits

    policy = Policy(str(tiny_model_dir), dtype="float32")
    base = logits(policy)
    policy.set_adapter(folder)
    assert torch.equal(logits(policy), logits(Policy(folder, dtype="float32")))
    assert not torch.equal(logits(policy), base)
    policy.set_adapter(rounds["lora"].adapter)  # from a full folder to an adapter and back
    policy.set_adapter(None)
    assert torch.equal(logits(policy), base)


def test_full_dpo_measures_against_a_frozen_copy(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(str(tiny_model_dir), threads=2)
    dpo = FULL.model_copy(update={"method": "dpo", "batch_size": 2, "full_dpo_learning_rate": 1e-2})
    against_base = dpo.model_copy(update={"reference": "base"})
    base = trainer.train([], against_base, str(tmp_path / "a"), pairs=PAIRS)
    # policy and reference both start as the base: every log-ratio is 0, the loss ln 2
    assert base.losses[0] == pytest.approx(LN2, abs=1e-6)
    assert (base.pairs, base.steps) == (4, 2) and math.isfinite(base.loss)
    fresh_vs_prev = dpo.model_copy(update={"start": "fresh", "reference": "previous"})
    other = trainer.train([], fresh_vs_prev, str(tmp_path / "b"), base.adapter, pairs=PAIRS)
    assert abs(other.losses[0] - LN2) > 1e-4  # the reference is the trained model
    assert "forward" not in vars(trainer.base)


def test_lora_cannot_continue_a_full_round(rounds: dict, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="strategy = 'full'"):
        rounds["trainer"].train(ROWS, CFG, str(tmp_path / "x"), rounds["full"].adapter)


def test_qlora_names_what_this_machine_lacks(rounds: dict, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this check is for machines without a CUDA GPU")
    check_strategy("lora")
    check_strategy("full")
    with pytest.raises(UserError, match=QLORA_MISSING) as err:
        check_strategy("qlora")
    assert "no CUDA GPU" in str(err.value) and "strategy 'lora'" in str(err.value)
    qlora = CFG.model_copy(update={"strategy": "qlora"})
    with pytest.raises(UserError, match=QLORA_MISSING):
        rounds["trainer"].train(ROWS, qlora, str(tmp_path / "q"))


def test_a_folder_with_neither_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither a PEFT adapter"):
        is_full_model(tmp_path)


@pytest.mark.gpu
def test_qlora_trains_an_adapter_on_a_4bit_base(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("qlora needs a CUDA GPU")
    trainer = Trainer(str(tiny_model_dir))
    before = {k: v.clone() for k, v in trainer.base.state_dict().items()}
    r = trainer.train(ROWS, CFG.model_copy(update={"strategy": "qlora"}), str(tmp_path / "q"))

    assert (r.strategy, r.steps, r.trainable_params) == ("qlora", 2, LORA_PARAMS)
    assert not is_full_model(r.adapter) and r.peak_gpu_bytes > 0
    assert all(torch.equal(trainer.base.state_dict()[n], v) for n, v in before.items())
    policy = Policy(str(tiny_model_dir), dtype="float32")
    policy.set_adapter(r.adapter)  # served on the unquantized base
