"""DPO and SFT-then-DPO on the tiny Llama.

DPO's first logged loss tells which reference it measured against: while the policy equals the
reference every log-ratio is 0, so the sigmoid loss is -log(sigmoid(0)) = ln 2 exactly; a
reference that differs from the starting policy gives another value.
"""

import math
from pathlib import Path

import pytest
import torch

from loop.chat_template import PROBLEMS
from loop.config import TrainConfig
from loop.trainer import Trainer
from tests.test_trainer import CFG, ROWS, adapter_weights

LN2 = math.log(2)
PAIRS = [
    {
        "prompt": [{"role": "user", "content": f"What should I pack for trip number {i}?"}],
        "chosen": [{"role": "assistant", "content": f"Ahoy matey, pack {i} warm jumpers!"}],
        "rejected": [{"role": "assistant", "content": f"I do not know about trip {i}."}],
        "prompt_id": f"p{i}",
    }
    for i in range(4)
]
# A second end-of-turn inside the response: the chat-template check drops this pair.
BAD = PAIRS[0] | {
    "prompt_id": "bad",
    "rejected": [{"role": "assistant", "content": "No<|im_end|>"}],
}
DPO = CFG.model_copy(
    update={"method": "dpo", "dpo_learning_rate": 1e-2, "reference": "base", "batch_size": 2}
)


def config(**update: object) -> TrainConfig:
    return DPO.model_copy(update=update)


@pytest.fixture(scope="module")
def runs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    trainer = Trainer(str(tiny_model_dir), threads=2)
    before = {k: v.clone() for k, v in trainer.base.state_dict().items()}
    out = tmp_path_factory.mktemp("dpo")
    fresh = trainer.train([], DPO, str(out / "fresh"), seed=0, pairs=[*PAIRS, BAD])
    prev = fresh.adapter
    both = trainer.train(ROWS, config(method="sft+dpo"), str(out / "both"), seed=0, pairs=PAIRS)
    both_progress = trainer.progress()
    runs = {
        "same": config(start="previous", reference="previous"),
        "from_base": config(start="previous", reference="base"),
        "fresh_vs_prev": config(start="fresh", reference="previous"),
    }
    return {
        "trainer": trainer,
        "before": before,
        "out": out,
        "fresh": fresh,
        "both": both,
        "both_progress": both_progress,
        **{
            name: trainer.train([], cfg, str(out / name), prev, seed=1, pairs=PAIRS)
            for name, cfg in runs.items()
        },
    }


def test_dpo_result_fields(runs: dict) -> None:
    r = runs["fresh"]

    assert (r.method, r.trained, r.diverged) == ("dpo", True, False)
    assert (r.examples, r.pairs, r.steps) == (0, 4, 2)  # the bad pair dropped; 4 / batch 2
    assert r.checks == {"dpo/bos": 0, "dpo/eos": 1, "dpo/prompt": 0, "dpo/too_long": 0}
    assert len(r.losses) == 2 and all(math.isfinite(x) for x in r.losses)
    assert r.loss == r.dpo_loss == pytest.approx(sum(r.losses) / 2, rel=1e-3)
    assert r.sft_loss is None
    assert {"rewards/accuracies", "rewards/margins", "rewards/chosen"} <= r.dpo.keys()
    assert all(math.isfinite(v) for v in r.dpo.values())
    assert r.adapter == str(runs["out"] / "fresh")


def test_a_fresh_lora_against_the_base_starts_at_ln2(runs: dict) -> None:
    assert runs["fresh"].losses[0] == pytest.approx(LN2, abs=1e-6)


def test_dpo_changes_the_adapter_and_saves_only_it(runs: dict) -> None:
    weights = adapter_weights(runs["fresh"].adapter)
    lora_b = [v for n, v in weights.items() if "lora_B" in n]
    assert len(lora_b) == 2 * 2  # q_proj and v_proj in each of 2 layers
    assert all(v.abs().max() > 0 for v in lora_b)  # PEFT starts lora_B at zero
    assert not any("ref" in n for n in weights)
    assert not (Path(runs["fresh"].adapter) / "ref").exists()


def test_base_is_untouched_by_dpo(runs: dict) -> None:
    base = runs["trainer"].base
    state = base.state_dict()
    assert state.keys() == runs["before"].keys()
    for name, value in runs["before"].items():
        assert torch.equal(state[name], value), name
    assert not any("lora" in n for n, _ in base.named_parameters())
    assert "forward" not in vars(base)  # TRL's fused log-prob head is gone again


def test_sft_then_dpo_runs_both_on_one_adapter(runs: dict) -> None:
    r = runs["both"]

    assert (r.method, r.examples, r.pairs, r.steps) == ("sft+dpo", 8, 4, 6)  # batch 2
    assert len(r.losses) == 6
    assert r.sft_loss == pytest.approx(sum(r.losses[:4]) / 4, rel=1e-3)
    assert r.dpo_loss == r.loss == pytest.approx(sum(r.losses[4:]) / 2, rel=1e-3)
    assert set(r.checks) == {f"{k}/{p}" for k in ("sft", "dpo") for p in PROBLEMS}
    assert runs["both_progress"] == (6, 6)  # the DPO steps count on from the SFT steps
    # The reference is the base, not the adapter as SFT left it: DPO does not start at ln 2.
    assert abs(r.losses[4] - LN2) > 1e-4


def test_reference_previous_is_the_saved_adapter(runs: dict) -> None:
    # Continuing the previous adapter against itself starts at ln 2 ...
    assert runs["same"].losses[0] == pytest.approx(LN2, abs=1e-6)
    # ... against the base, or a fresh LoRA against the previous adapter, does not.
    assert abs(runs["from_base"].losses[0] - LN2) > 1e-4
    assert abs(runs["fresh_vs_prev"].losses[0] - LN2) > 1e-4


def test_dpo_continues_from_the_previous_adapter(runs: dict) -> None:
    start = adapter_weights(runs["fresh"].adapter)
    after = adapter_weights(runs["same"].adapter)
    assert start.keys() == after.keys()
    assert any(not torch.equal(after[n], start[n]) for n in start)
    # a fresh LoRA would have started from lora_B = 0; these moved a little from the start
    for n in start:
        torch.testing.assert_close(after[n], start[n], atol=0.1, rtol=0)


def test_dpo_without_pairs_trains_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(str(tiny_model_dir), threads=2)

    r = trainer.train(ROWS, DPO, str(tmp_path / "a"), pairs=[])

    assert (r.trained, r.adapter, r.steps, r.pairs, r.examples) == (False, None, 0, 0, 0)
    assert math.isnan(r.loss) and not (tmp_path / "a").exists()


def test_non_finite_dpo_loss_stops_training_and_saves_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = Trainer(str(tiny_model_dir), threads=2)
    with torch.no_grad():
        trainer.base.get_input_embeddings().weight.fill_(float("nan"))

    r = trainer.train([], config(epochs=3.0), str(tmp_path / "a"), pairs=PAIRS)

    assert r.diverged and r.adapter is None and not (tmp_path / "a").exists()
    assert r.steps < 6  # stopped at the first non-finite loss, not after 3 epochs
    assert not math.isfinite(r.losses[-1])
