"""Shared fixtures: the repo's data files, a tiny random Llama and the real MiniLM embedder.

The tiny model uses the default policy's tokenizer and chat template, so prompts are encoded as in
a real run, but it has 2 layers of width 32 and loads in well under a second.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from loop.models import MINILM, SMOLLM2, resolve_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# CI clones the repo next to a copy of shared/, so the data lives one level above the repo.
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Many tests read the public datasets; without them they would fail one by one, far from
    # the cause.
    if not SHARED_DATA.is_dir():
        pytest.exit(
            f"the tests read public datasets from {SHARED_DATA}, which does not exist: clone "
            "the repo next to the shared/ folder that holds data/",
            returncode=4,
        )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def seeds_file() -> Path:
    return REPO / "generators" / "data" / "seeds.jsonl"


@pytest.fixture(scope="session")
def heldout_file() -> Path:
    return REPO / "generators" / "data" / "heldout.jsonl"


@pytest.fixture(scope="session")
def default_model_dir() -> str:
    return resolve_model(SMOLLM2)


@pytest.fixture(scope="session")
def embedder_dir() -> str:
    return resolve_model(MINILM)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, default_model_dir: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # The default model's generation config carries its end-of-turn id, which Policy stops on.
    model.generation_config = GenerationConfig.from_pretrained(default_model_dir)

    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _write_config(tmp_path: Path, **sections: dict) -> Path:
    """The repo's config.toml at tiny sizes, with `sections` merged over it."""
    import tomllib

    import tomli_w

    data = tomllib.loads((REPO / "config.toml").read_text())
    data["generate"] |= {
        "seed_file": str(REPO / "generators/data/seeds.jsonl"),
        "prompts_per_round": 4,
        "new_instructions": 2,
        "responses_per_prompt": 2,
        "max_new_tokens": 24,
        "batch_size": 8,
    }
    data["eval"] |= {
        "heldout_file": str(REPO / "generators/data/heldout.jsonl"),
        "max_prompts": 4,
        "max_new_tokens": 24,
    }
    data["train"] |= {"epochs": 1}
    data["audit"] |= {
        "crows_pairs_file": str(SHARED_DATA / "crows_pairs_anonymized.csv"),
        "max_pairs": 16,
    }
    for name, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                data[name].setdefault(key, {}).update(value)
            else:
                data[name][key] = value
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture(scope="session")
def write_config():
    """A function (folder, **sections) -> path of a tiny-sized copy of the default config."""
    return _write_config


def _tiny_sections(tiny_model_dir: Path) -> dict:
    """Config sections for a tiny-model run whose rounds all train and are accepted."""
    return {
        "model": {"policy": str(tiny_model_dir), "dtype": "float32"},
        "critics": {
            "rules": {"enabled": False},  # a random model's answers break every rule
            "quality": {"threshold": 0.0},
            "persona": {"threshold": 0.0},
        },
        "generate": {"prompts_per_round": 3, "new_instructions": 0, "responses_per_prompt": 3},
        "gate": {"margin": -1.0, "max_loops": 1.0, "max_mc_drop": 1.0, "max_perplexity_rise": 99.0},
    }


@pytest.fixture(scope="session")
def tiny_sections(tiny_model_dir: Path) -> dict:
    return _tiny_sections(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """Two real rounds on the tiny model, run once per session with --json logs: the run folder
    and the captured stderr. Every round trains an adapter and is accepted."""
    import contextlib
    import io

    from loop.cli import main

    folder = tmp_path_factory.mktemp("tiny-run")
    config = _write_config(folder, **_tiny_sections(tiny_model_dir))
    run, err = folder / "run", io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", str(config), "--rounds", "2", "--run-dir", str(run), "--json"])
    assert code == 0, err.getvalue()[-2000:]
    return {"run": run, "stderr": err.getvalue()}
