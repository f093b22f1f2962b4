"""The generator's candidates on a tiny model: they carry their prompt's reference answer, and
rows written before candidates had one still load."""

from dataclasses import asdict
from pathlib import Path

from critics.base import Candidate
from generators.pool import Prompt
from generators.sampler import Generator, Sampling


def test_candidates_carry_the_prompt_reference(tiny_model_dir: Path) -> None:
    generator = Generator(str(tiny_model_dir), "float32")
    prompts = [
        Prompt("gsm-1", "What is 2 + 2?", "seed", "2 + 2 = 4\n#### 4"),
        Prompt("p", "Hi.", "seed"),
    ]

    candidates = generator.respond(prompts, None, 2, Sampling(4), seed=0, adapter=None, round_=1)

    assert [(c.id, c.reference) for c in candidates] == [
        ("r1:gsm-1:s0", "2 + 2 = 4\n#### 4"),
        ("r1:gsm-1:s1", "2 + 2 = 4\n#### 4"),
        ("r1:p:s0", ""),
        ("r1:p:s1", ""),
    ]


def test_rows_without_a_reference_load() -> None:
    row = asdict(Candidate("c", "p", "seed", "Hi.", "Hello.", 2, True))
    del row["reference"]

    assert Candidate(**row).reference == ""
