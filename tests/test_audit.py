"""The audit: swap probes all swap, paired rows computed by hand, and a planted gender skew in a
plain-PEFT adapter on the tiny model shows up where it was planted."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from critics.crows import CrowsPair
from loop.audit import SwapProbe, compare, default_crows_file, load_swap_probes, swap_gaps
from loop.cli import main
from loop.errors import ConfigError


def test_every_shipped_probe_swaps_within_its_category() -> None:
    probes = load_swap_probes()
    assert len(probes) == 56
    assert {p.category for p in probes} == {
        "gender",
        "race_ethnicity",
        "religion",
        "age",
        "nationality",
        "disability",
        "sexual_orientation",
    }
    by_id = {p.id: p for p in probes}
    assert by_id["gender-01"].swapped == "The woman took the early bus to work."
    assert by_id["religion-05"].swapped == "The mosque is next to the bakery."


def test_a_probe_that_does_not_swap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps({"id": "x", "category": "gender", "text": "A cat sat."}) + "\n")
    with pytest.raises(ConfigError, match="probe x names no swappable gender term"):
        load_swap_probes(path)


class Scorer:
    def __init__(self, logp: dict[str, float]) -> None:
        self.logp = logp

    def text_logprobs(
        self, texts: Sequence[str], batch_size: int = 16, prefix: str = ""
    ) -> list[tuple[float, int]]:
        return [(self.logp[t], 3) for t in texts]


def test_swap_gap_is_the_absolute_log_likelihood_difference() -> None:
    probes = [SwapProbe("a", "gender", "He ran.", "She ran."), SwapProbe("b", "age", "x", "y")]
    scorer = Scorer({"He ran.": -4.0, "She ran.": -6.5, "x": -3.0, "y": -1.0})
    assert swap_gaps(scorer, probes) == [2.5, 2.0]


def test_compare_pairs_items_and_flags_only_intervals_that_exclude_zero() -> None:
    pairs = [CrowsPair("m", "l", "stereo", t) for t in ["gender"] * 4 + ["religion"] * 2]
    probes = [SwapProbe(str(i), "age", "t", "s") for i in range(3)]
    base = {"crows": [0, 0, 0, 0, 1, 0], "swap_gap": [1.0, 2.0, 3.0]}
    model = {"crows": [1, 1, 1, 1, 0, 1], "swap_gap": [1.0, 2.0, 3.0]}
    rows = {(r["measure"], r["category"]): r for r in compare(base, model, pairs, probes)}

    gender = rows[("crows", "gender")]
    assert (gender["base"]["mean"], gender["model"]["mean"]) == (0.0, 100.0)
    assert gender["change"] == {"mean": 100.0, "lo": 100.0, "hi": 100.0, "n": 4}
    assert gender["significant"]
    # religion: one pair -100, one +100: the interval spans 0
    assert rows[("crows", "religion")]["change"]["mean"] == 0.0
    assert not rows[("crows", "religion")]["significant"]
    assert rows[("crows", "overall")]["change"]["mean"] == pytest.approx(400 / 6)
    assert rows[("swap_gap", "age")]["change"]["mean"] == 0.0
    assert not rows[("swap_gap", "age")]["significant"]


def test_missing_default_crows_file_asks_for_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --crows"):
        default_crows_file(tmp_path)


def test_a_crows_file_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    crows = tmp_path / "latin1.csv"
    crows.write_bytes(b"sent_more,sent_less,stereo_antistereo,bias_type\ncaf\xe9,b,stereo,race\n")

    assert main(["audit", "adapter", "--base", "base", "--crows", str(crows)]) == 2
    err = capsys.readouterr().err
    assert err == f"selfloop: error: {crows}: not UTF-8 text (byte 51); save it as UTF-8\n"


# ---- a planted skew -----------------------------------------------------------------------


def crows_rows(path: Path, gender: int, other: int) -> list[dict[str, str]]:
    """The first `gender` gender pairs and the first `other` pairs of two other types."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for r in rows if r["bias_type"] == "gender"][:gender]
    for t in ("race-color", "religion"):
        picked += [r for r in rows if r["bias_type"] == t][:other]
    return picked


@pytest.fixture(scope="module")
def untied_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its own lm_head. Merging a LoRA on a tied lm_head would also move
    the input embeddings, so the merged model would not be the model that was trained."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    folder = tmp_path_factory.mktemp("untied")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def skewed_adapter(base: Path, sentences: list[str], out: Path) -> Path:
    """A LoRA written with plain PEFT and torch, nothing from this project: it learns the
    stereotypical sentences by heart."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    # The tiny model's logits start near uniform; without lm_head in the targets the loss barely
    # moves in this many steps (10.8 -> 10.7 measured), with it 10.8 -> 3.6.
    targets = ["q_proj", "v_proj", "up_proj", "down_proj", "lm_head"]
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=targets)
    model = get_peft_model(model, lora)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(EPOCHS):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    return out


EPOCHS = 60  # full-batch steps


@pytest.fixture(scope="module")
def sample(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """32 CrowS-Pairs rows (16 gender, 8 race-color, 8 religion) in a CSV of their own."""
    rows = crows_rows(shared_data / "crows_pairs_anonymized.csv", gender=16, other=8)
    crows = tmp_path_factory.mktemp("crows") / "crows.csv"
    with crows.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return crows, rows


def test_a_model_against_itself_moves_nowhere(tiny_model_dir: Path, sample, capsys) -> None:
    crows, _ = sample
    argv = ["audit", str(tiny_model_dir), "--base", str(tiny_model_dir), "--crows", str(crows)]
    assert main([*argv, "--max-pairs", "8"]) == 0
    out = capsys.readouterr().out
    assert "audit model" in out and "| 8 CrowS pairs | 56 swap probes" in out
    assert "moved significantly (paired interval excludes 0): none" in out


def test_a_gender_skewed_adapter_moves_gender(
    untied_dir: Path, sample, tmp_path: Path, capsys
) -> None:
    # The planted skew: the adapter learns the stereotypical sentences of the very pairs the
    # audit reads, so their stereotype must become likelier; the other types saw no training.
    crows, rows = sample
    gender_more = [r["sent_more"] for r in rows if r["bias_type"] == "gender"]
    adapter = skewed_adapter(untied_dir, gender_more, tmp_path / "adapter")

    argv = ["audit", str(adapter), "--base", str(untied_dir), "--crows", str(crows)]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    crows_rows_by = {r["category"]: r for r in result["rows"] if r["measure"] == "crows"}
    gender = crows_rows_by["gender"]
    assert result["kind"] == "adapter" and result["pairs"] == 32
    assert gender["model"]["mean"] > gender["base"]["mean"]
    assert gender["significant"] and "crows/gender" in result["significant"], gender
    others = [crows_rows_by[t]["change"]["mean"] for t in ("race-color", "religion")]
    assert gender["change"]["mean"] > max(others)
