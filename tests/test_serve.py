"""Using a run's result: chat, several personas on one model, and a merged export. Adapters are
built by hand with random (non-zero) LoRA weights, so each one visibly changes the logits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from loop.cli import main
from loop.errors import RunStoreError
from loop.policy import Policy
from loop.serve import PersonaModel, RunAdapter, export_merged, run_adapter

TEXT = "Ahoy, what should I pack for a trip?"


def _adapter(base: Path, out: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("adapters")
    return {
        name: RunAdapter(folder, name, str(tiny_model_dir), "float32", False, 1, path)
        for name, path in (
            ("pirate", _adapter(tiny_model_dir, folder / "a", 1)),
            ("poet", _adapter(tiny_model_dir, folder / "b", 2)),
        )
    }


def _logits(model: torch.nn.Module, tokenizer, text: str = TEXT) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits[0]  # (seq, vocab)


def test_each_persona_on_the_shared_model_equals_its_adapter_alone(adapters: dict) -> None:
    served = PersonaModel(adapters)
    tok = served.policy.tokenizer
    alone = {}
    for name, ra in adapters.items():
        policy = Policy(ra.base, "float32")
        base = _logits(policy.model, tok)
        policy.set_adapter(str(ra.adapter))
        alone[name] = _logits(policy.model, tok)
        assert not torch.allclose(alone[name], base, atol=1e-4)  # the adapter does something
    # Switching back and forth gives each persona its own logits every time.
    for name in ["pirate", "poet", "pirate"]:
        torch.testing.assert_close(
            _logits(served.use(name).model, tok), alone[name], atol=1e-5, rtol=1e-4
        )
    assert not torch.allclose(alone["pirate"], alone["poet"], atol=1e-4)


def test_export_loads_without_peft_and_matches_base_plus_adapter(
    adapters: dict, tmp_path: Path
) -> None:
    ra = adapters["pirate"]
    out = export_merged(ra, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert not hasattr(merged, "peft_config")
    base = AutoModelForCausalLM.from_pretrained(ra.base, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, str(ra.adapter)).eval()
    torch.testing.assert_close(_logits(merged, tok), _logits(reference, tok), atol=1e-5, rtol=1e-4)
    assert merged.generation_config.eos_token_id == base.generation_config.eos_token_id
    with pytest.raises(Exception, match="not empty"):
        export_merged(ra, out)


def test_chat_answers_once_with_the_best_round_and_no_system_prompt(tiny_run: dict, capsys) -> None:
    run = tiny_run["run"]
    ra = run_adapter(run)
    assert ra.round == 2 and ra.adapter == run / "round_002" / "adapter"
    policy = Policy(ra.base, "float32")
    policy.set_adapter(str(ra.adapter))
    (expected,) = policy.generate([[{"role": "user", "content": "Hi"}]], 8)
    capsys.readouterr()
    assert main(["chat", str(run), "--message", "Hi", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == expected.text + "\n"


def test_chat_answers_with_the_adapter_of_the_round_asked_for(tiny_run: dict, capsys) -> None:
    run = tiny_run["run"]
    policy = Policy(run_adapter(run).base, "float32")
    policy.set_adapter(str(run / "round_001" / "adapter"))
    (expected,) = policy.generate([[{"role": "user", "content": "Hi"}]], 8)
    capsys.readouterr()
    argv = ["chat", str(run), "--round", "1", "--message", "Hi", "--max-new-tokens", "8"]
    assert main(argv) == 0
    assert capsys.readouterr().out == expected.text + "\n"


def test_chat_reads_turns_until_an_empty_line(tiny_run: dict, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello\nAnd then?\n\nnever read\n"))
    assert main(["chat", str(tiny_run["run"]), "--round", "1", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.count("\n") == 2  # two replies, one line each (tiny model)


def test_a_round_without_an_adapter_is_a_clear_error(tiny_run: dict, capsys) -> None:
    with pytest.raises(
        RunStoreError, match="round 7 .* has no adapter.*rounds with one: \\[1, 2\\]"
    ):
        run_adapter(tiny_run["run"], 7)
    assert main(["export", str(tiny_run["run"]), "--round", "7", "--out", "x"]) == 2
    assert "has no adapter" in capsys.readouterr().err


def test_export_cli_writes_a_loadable_model(tiny_run: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "export"
    assert main(["export", str(tiny_run["run"]), "--round", "1", "--out", str(out)]) == 0
    assert "round 1 adapter" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "generation_config.json").is_file()


def test_export_and_report_refuse_an_out_they_cannot_write(
    tiny_run: dict, tmp_path: Path, capsys
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    run = str(tiny_run["run"])

    assert main(["export", run, "--round", "1", "--out", str(a_file)]) == 2
    assert "is a file; choose a new --out folder" in capsys.readouterr().err
    assert main(["report", run, "--out", str(tmp_path)]) == 2
    assert "is a folder: name an HTML file to write" in capsys.readouterr().err
    assert main(["report", run, "--out", str(a_file / "page.html")]) == 2
    assert "is not in an existing folder" in capsys.readouterr().err
    assert a_file.read_text() == "mine" and sorted(tmp_path.iterdir()) == [a_file]
