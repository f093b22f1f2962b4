"""The shipped recipes load, and their pools load with the right fields, slices and references."""

from pathlib import Path

from critics.verifier import check
from generators.pool import check_split
from loop.config import RulesCriticConfig, VerifierCriticConfig, load_config
from loop.driver import load_pools


def test_gsm8k_recipe_loads_and_its_pools_carry_references(
    repo_root: Path, shared_data: Path
) -> None:
    cfg = load_config(repo_root / "recipes" / "gsm8k.toml")
    g, e = cfg.generate, cfg.eval

    seeds, heldout = load_pools(cfg)

    gsm8k = str((shared_data / "gsm8k_test.jsonl").resolve())
    assert g.seed_file == e.heldout_file == gsm8k
    assert (len(seeds), len(heldout)) == (1000, 32)
    assert seeds[0].instruction.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert seeds[0].reference.endswith("#### 18")
    assert (seeds[-1].id, heldout[0].id) == ("seed-1000", "heldout-1001")
    assert all("####" in p.reference for p in seeds + heldout)
    check_split(seeds, heldout)  # no problem is in both
    assert g.new_instructions == 0
    assert isinstance(cfg.critics["correct"], VerifierCriticConfig)
    assert cfg.critics["correct"].weight > 0
    rules = cfg.critics["rules"]
    assert isinstance(rules, RulesCriticConfig) and rules.refusals and rules.language == "en"


def test_gsm8k_system_prompt_asks_for_the_format_the_verifier_reads(repo_root: Path) -> None:
    cfg = load_config(repo_root / "recipes" / "gsm8k.toml")

    assert '"The answer is N."' in cfg.persona.system_prompt
    assert check("2 + 1 = 3 bolts. The answer is 3.", "#### 3", "numeric")[0]
