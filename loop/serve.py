"""Use a run's result: chat with base + a round's adapter, serve several runs' personas from one
model, or export a merged checkpoint that plain transformers loads.

The base model is always the one the run trained on: `model.policy` of its frozen config. No system
prompt is sent; the voice lives in the adapter's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loop.errors import RunStoreError, UserError
from loop.policy import Conversation, Policy
from loop.store import STATE, read_json


@dataclass(frozen=True)
class RunAdapter:
    """One run's base model folder and the adapter of one of its rounds."""

    run: Path
    persona: str
    base: str  # local folder of the base model
    dtype: str
    trust_remote_code: bool
    round: int
    adapter: Path


def run_adapter(run: Path, round_: int | None = None) -> RunAdapter:
    """The adapter of round `round_`, or of the run's policy (its best accepted round) when None."""
    from loop.driver import open_run
    from loop.models import resolve_model

    store, cfg = open_run(Path(run))
    if round_ is None:
        state = store.root / STATE
        chosen = read_json(state).get("policy_adapter") if state.is_file() else None
        if not chosen:
            raise RunStoreError(
                f"{store.root} has no accepted round yet; pick one with --round K "
                f"(rounds on disk: {store.rounds_on_disk() or 'none'})"
            )
        round_ = int(Path(chosen).parent.name.split("_")[1])
    adapter = store.round_dir(round_) / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        with_adapter = [
            k for k in store.rounds_on_disk() if (store.round_dir(k) / "adapter").is_dir()
        ]
        raise RunStoreError(
            f"round {round_} of {store.root} has no adapter (it trained nothing or is not "
            f"done); rounds with one: {with_adapter or 'none'}"
        )
    return RunAdapter(
        run=store.root,
        persona=cfg.persona.name,
        base=resolve_model(cfg.model.policy, "model.policy"),
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        round=round_,
        adapter=adapter,
    )


def load_policy(ra: RunAdapter) -> Policy:
    """Base + the adapter merged, ready for Policy.generate."""
    policy = Policy(ra.base, ra.dtype, trust_remote_code=ra.trust_remote_code)
    policy.set_adapter(str(ra.adapter))
    return policy


def reply(
    policy: Policy,
    history: Conversation,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
) -> str:
    """The model's answer to a conversation that ends with a user turn."""
    (gen,) = policy.generate([history], max_new_tokens, temperature=temperature)
    return gen.text


# ---- several personas on one base --------------------------------------------------------


class PersonaModel:
    """One base model with several runs' LoRA adapters loaded side by side (PEFT multi-adapter).
    Each request names its persona; switching is a pointer change, not a reload.

    All runs must share one base model folder, since the adapters are deltas on it."""

    def __init__(self, adapters: dict[str, RunAdapter]) -> None:
        from peft import PeftModel

        if not adapters:
            raise UserError("name at least one run to serve")
        bases = {ra.base for ra in adapters.values()}
        if len(bases) > 1:
            raise UserError(
                f"these runs train different base models ({', '.join(sorted(bases))}); "
                "serve each on its own"
            )
        first = next(iter(adapters.values()))
        self.policy = Policy(first.base, first.dtype, trust_remote_code=first.trust_remote_code)
        names = list(adapters)
        model = PeftModel.from_pretrained(
            self.policy.model, str(adapters[names[0]].adapter), adapter_name=names[0]
        )
        for name in names[1:]:
            model.load_adapter(str(adapters[name].adapter), adapter_name=name)
        # Policy's text methods only call self.model, so the PeftModel stands in for the base.
        self.policy.model = model.eval()
        self.personas = names

    def use(self, persona: str) -> Policy:
        """The policy with `persona`'s adapter active."""
        if persona not in self.personas:
            raise UserError(f"no persona '{persona}'; loaded: {', '.join(self.personas)}")
        self.policy.model.set_adapter(persona)
        return self.policy

    def reply(self, persona: str, history: Conversation, **kw: float) -> str:
        return reply(self.use(persona), history, **kw)  # type: ignore[arg-type]


def persona_adapters(runs: Sequence[Path]) -> dict[str, RunAdapter]:
    """Each run's policy adapter keyed by its persona name; a repeated name gets the run folder's
    name instead, so two runs of one persona stay apart."""
    out: dict[str, RunAdapter] = {}
    for run in runs:
        ra = run_adapter(run)
        name = ra.persona if ra.persona not in out else ra.run.name
        if name in out:
            raise UserError(f"two runs are both called '{name}'; rename one run folder")
        out[name] = ra
    return out


# ---- export ------------------------------------------------------------------------------


@torch.no_grad()
def export_merged(ra: RunAdapter, out: Path) -> Path:
    """Write base + adapter merged into `out`: weights, tokenizer and generation config, loadable
    with AutoModelForCausalLM.from_pretrained(out) and no PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; choose a new --out folder")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new --out folder")
    # float32 for the merge whatever the run's dtype, so the sum is not rounded twice
    base = AutoModelForCausalLM.from_pretrained(
        ra.base, dtype=torch.float32, trust_remote_code=ra.trust_remote_code
    )
    merged = PeftModel.from_pretrained(base, str(ra.adapter)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(ra.base, trust_remote_code=ra.trust_remote_code).save_pretrained(
        out
    )
    return out
