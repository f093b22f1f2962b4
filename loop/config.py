"""Typed run configuration: `config.toml` mapped onto pydantic models, one per concern.

Everything is validated here, before any actor starts. Errors name the key and say what to do;
relative file paths are resolved against the folder of the config file, so a frozen config in a
run folder works from anywhere.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from loop.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def row_range(spec: str) -> tuple[int, int | None]:
    """A "start:end" row slice (0-based, end excluded, either side may be left out; "" = all)."""
    found = re.fullmatch(r"(\d*):(\d*)", spec)
    if spec and not found:
        raise ValueError(f'rows must be "start:end" in whole numbers, like "0:1000", not {spec!r}')
    start, end = found.groups() if found else ("", "")
    lo, hi = int(start or 0), int(end) if end else None
    if hi is not None and hi <= lo:
        raise ValueError(f"rows {spec!r} is empty: end must be above start")
    return lo, hi


class PoolFields(Section):
    """Which fields of a JSONL pool hold the instruction and its reference answer, and which rows
    to read, so seeds and held-out prompts can come from one file without overlap."""

    instruction_field: str = Field("instruction", min_length=1, description="JSON field")
    reference_field: str = Field("", description="JSON field of the reference answer; '' = none")
    rows: str = Field("", description='"start:end" slice of the file\'s rows (0-based); "" = all')

    @field_validator("rows")
    @classmethod
    def _rows_parse(cls, v: str) -> str:
        row_range(v)
        return v


class RunConfig(Section):
    name: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=100,
        description="run folder name under runs_dir: letters, digits, '.', '_' and '-'",
    )
    runs_dir: str = Field("runs", description="folder that holds the run folders")
    rounds: int = Field(3, ge=1, le=1000)
    seed: int = Field(0, ge=0)


class ModelConfig(Section):
    policy: str = Field(
        "embedded:smollm2-135m-instruct", description="embedded name, HF id or folder"
    )
    embedder: str = "embedded:all-minilm-l6-v2"
    dtype: Literal["bfloat16", "float32", "float16"] = "bfloat16"
    trust_remote_code: bool = Field(False, description="run model code from a hub repository")


class PersonaConfig(Section):
    name: str = Field(min_length=1)
    system_prompt: str = Field(min_length=1, description="used while generating, never in training")
    description: str = Field(min_length=1, description="how the persona speaks, for the judge")
    markers: list[Annotated[str, Field(pattern=r"\S")]] = Field(
        min_length=1, description="words that show the voice; eval only"
    )

    @field_validator("markers")
    @classmethod
    def _markers_can_match(cls, v: list[str]) -> list[str]:
        # Markers are matched as whole words (\b...\b), which a word that begins or ends in
        # punctuation ("ahoy!", "c++") never is.
        bad = [m for m in v if not re.fullmatch(r"\w(.*\w)?", m.strip())]
        if bad:
            raise ValueError(
                f"marker {bad[0]!r} begins or ends with a character that is not a letter or "
                "digit, so it never matches as a whole word: leave the punctuation out"
            )
        return v


class GenerateConfig(PoolFields):
    seed_file: str = "generators/data/seeds.jsonl"
    prompts_per_round: int = Field(24, ge=1)
    new_instructions: int = Field(8, ge=0, description="self-instruct requests per round")
    shots: int = Field(3, ge=1, le=16, description="pool examples shown per self-instruct request")
    instruction_max_tokens: int = Field(
        48, ge=8, le=512, description="token limit of a new instruction"
    )
    responses_per_prompt: int = Field(2, ge=1, le=16)
    max_new_tokens: int = Field(128, ge=4, le=4096)
    trim_truncated: bool = Field(
        True,
        description="cut a response that hit the limit back to "
        "its last full sentence instead of rejecting it",
    )
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1)


class CriticBase(Section):
    enabled: bool = True
    weight: float = Field(0.0, ge=0.0, description="share in the combined score")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="a score below it fails")


class RulesCriticConfig(CriticBase):
    """Cheap checks: empty, too short or long, truncated at the token limit, repetitive,
    instruction echoed back, refusal or boilerplate, wrong language."""

    kind: Literal["rules"] = "rules"
    min_words: int = Field(3, ge=0)
    max_words: int = Field(400, ge=1, description="a longer response fails")
    ngram: int = Field(3, ge=1)
    max_repeat_ratio: float = Field(0.5, ge=0.0, le=1.0)
    max_echo: float = Field(0.8, ge=0.0, le=1.0)
    refusals: bool = Field(False, description="fail refusals and assistant boilerplate")
    language: str = Field(
        "", pattern=r"^([a-z]{2,3})?$", description="ISO 639 code responses must be in; '' = off"
    )
    language_min_words: int = Field(
        5, ge=1, description="shorter responses are not language-checked: they misclassify"
    )

    @field_validator("language")
    @classmethod
    def _language_known(cls, v: str) -> str:
        from critics.rules import language_codes  # loads the language-id model: only when used

        if v and v not in language_codes():
            raise ValueError(f"unknown language code {v!r}: use an ISO 639-1 code such as 'en'")
        return v


class JudgeCriticConfig(CriticBase):
    """An LLM judge read through its token probabilities: the score is P(yes) for `question`."""

    kind: Literal["judge"] = "judge"
    question: str = Field(
        min_length=1,
        description="the rubric, answered yes or no; {persona} is replaced by persona.description",
    )
    judge: str = Field("policy", description="'policy' (the current model) or a model path or id")


class PairwiseCriticConfig(CriticBase):
    """The judge picks the better of two sibling responses, asked in both orders; the score is
    a candidate's mean win probability against the other responses to the same prompt."""

    kind: Literal["pairwise"] = "pairwise"
    question: str = Field(
        "Which response answers the instruction better?",
        min_length=1,
        description="the rubric, answered A or B; {persona} is replaced by persona.description",
    )
    judge: str = Field("policy", description="'policy' (the current model) or a model path or id")
    threshold: float = Field(0.0, ge=0.0, le=1.0, description="a score below it fails")


class VerifierCriticConfig(CriticBase):
    """Checks the response's final answer against the prompt's reference answer."""

    kind: Literal["verifier"] = "verifier"
    checker: Literal["exact", "numeric"] = Field(
        "numeric", description="numeric: final numbers equal; exact: normalised text equal"
    )


class ContrastCriticConfig(CriticBase):
    """Log-likelihood ratio of the response with and without the persona's system prompt."""

    kind: Literal["contrast"] = "contrast"
    system_prompt: str = Field(
        "", description="the prompt to contrast; empty: persona.system_prompt"
    )
    scale: float = Field(10.0, gt=0.0, description="score = sigmoid(scale * per-token log-ratio)")


class DedupCriticConfig(CriticBase):
    """Embedding near-duplicates within the round and against every earlier round's survivors."""

    kind: Literal["dedup"] = "dedup"
    threshold: float = Field(
        0.92, gt=0.0, le=1.0, description="cosine at or above it is a duplicate"
    )
    index: Literal["flat", "hnsw"] = Field(
        "flat", description="'flat': exact; 'hnsw': approximate, for very large histories"
    )


class BiasCriticConfig(CriticBase):
    """Counterfactual swaps of the groups a candidate mentions (he -> she, Christian -> Muslim):
    the response's sentiment and the judge's P(yes) must not move with the group. Also sets how
    evenly the selected survivors may mention the groups of each category."""

    kind: Literal["bias"] = "bias"
    threshold: float = Field(0.0, ge=0.0, le=1.0, description="a score below it fails too")
    question: str = Field("", description="the judge's rubric; empty: eval.quality_question")
    max_sentiment_gap: float = Field(
        0.5, ge=0.0, le=2.0, description="largest VADER compound change a swap may cause"
    )
    max_judge_gap: float = Field(
        0.15, ge=0.0, le=1.0, description="largest P(yes) change a swap may cause"
    )
    max_group_share: float = Field(
        0.6,
        gt=0.0,
        le=1.0,
        description="selection: most one group may hold of its category's mentions among "
        "survivors; 1 turns the balance step off",
    )
    min_mentions: int = Field(5, ge=1, description="mentions a category needs to be balanced")


CRITIC_KINDS: dict[str, type[CriticBase]] = {
    "rules": RulesCriticConfig,
    "judge": JudgeCriticConfig,
    "contrast": ContrastCriticConfig,
    "dedup": DedupCriticConfig,
    "pairwise": PairwiseCriticConfig,
    "verifier": VerifierCriticConfig,
    "bias": BiasCriticConfig,
}
CriticConfig = Annotated[
    RulesCriticConfig
    | JudgeCriticConfig
    | ContrastCriticConfig
    | DedupCriticConfig
    | PairwiseCriticConfig
    | VerifierCriticConfig
    | BiasCriticConfig,
    Field(discriminator="kind"),
]


class SelectConfig(Section):
    budget: int = Field(32, ge=1, description="most survivors kept per round")
    strategy: Literal["top", "mmr"] = Field(
        "mmr", description="over budget: 'top' scores, or 'mmr' (score traded for diversity)"
    )
    diversity: float = Field(
        0.3, ge=0.0, le=1.0, description="mmr weight of similarity to those already picked"
    )


class TrainConfig(Section):
    strategy: Literal["lora", "full", "qlora"] = Field(
        "lora",
        description="lora: an adapter on the base; full: every weight; qlora: an adapter on a "
        "4-bit base (bitsandbytes and a CUDA GPU)",
    )
    full_learning_rate: float = Field(2e-5, gt=0.0, lt=1.0, description="SFT rate under 'full'")
    full_dpo_learning_rate: float = Field(1e-6, gt=0.0, lt=1.0, description="DPO rate under 'full'")
    real_file: str = Field(
        "", description="JSONL of real instruction/response examples to mix in; '' = none"
    )
    real_share: float = Field(
        0.0, ge=0.0, le=1.0, description="share of each round's SFT set taken from real_file"
    )
    method: Literal["sft", "dpo", "sft+dpo"] = Field(
        "sft", description="sft on survivors, dpo on preference pairs, or sft then dpo"
    )
    start: Literal["previous", "fresh"] = Field(
        "previous", description="continue the previous adapter, or a fresh LoRA on the base"
    )
    reference: Literal["base", "previous"] = Field(
        "previous", description="DPO reference: the base, or the previous round's policy"
    )
    dpo_beta: float = Field(0.1, gt=0.0, description="DPO's pull towards the reference")
    dpo_learning_rate: float = Field(5e-5, gt=0.0, lt=1.0)
    pair_margin: float = Field(
        0.05, ge=0.0, le=1.0, description="least combined-score gap of a preference pair"
    )
    epochs: float = Field(2.0, gt=0.0)
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0)
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(320, ge=16)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        min_length=1,
        description="layers a LoRA trains: names or dotted name ends, as PEFT matches them",
    )
    tensorboard: bool = Field(False, description="write training curves to <round>/tensorboard")

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, on: bool) -> bool:
        import importlib.util

        if on and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("tensorboard is not installed: pip install tensorboard, or set false")
        return on

    @model_validator(mode="after")
    def _real_share_needs_a_file(self) -> TrainConfig:
        if self.real_share > 0 and not self.real_file:
            raise ValueError("train.real_share above 0 needs examples: set train.real_file")
        return self

    @model_validator(mode="after")
    def _dpo_can_train_the_targets(self) -> TrainConfig:
        # TRL's DPO reads log-probs through lm_head's weight directly, so a LoRA there never trains.
        if self.method != "sft" and "lm_head" in self.target_modules:
            raise ValueError(
                f"method '{self.method}' cannot train a LoRA on lm_head: "
                "remove 'lm_head' from train.target_modules, or use method 'sft'"
            )
        return self


class EvalConfig(PoolFields):
    heldout_file: str = "generators/data/heldout.jsonl"
    max_prompts: int = Field(32, ge=1)
    max_new_tokens: int = Field(96, ge=4, le=4096)
    target: Literal["persona", "quality", "accuracy"] = Field(
        "persona",
        description="persona: share of answers in the voice (marker words, no loop); quality: "
        "the fixed base judge's P(yes); accuracy: held-out answers that match their reference",
    )
    quality_question: str = Field(
        "Does the response answer the instruction helpfully and correctly?", min_length=1
    )
    pairwise_question: str = Field(
        "Which response answers the instruction better?",
        min_length=1,
        description="asked of the base judge about two arms' answers, in both orders",
    )
    checker: Literal["numeric", "exact"] = Field(
        "numeric", description="how a held-out answer is compared with its reference"
    )

    @model_validator(mode="after")
    def _accuracy_needs_references(self) -> EvalConfig:
        if self.target == "accuracy" and not self.reference_field:
            raise ValueError(
                "eval.target 'accuracy' needs reference answers: set eval.reference_field"
            )
        return self


class GateConfig(Section):
    """When a round's adapter is accepted; a rejected round stays on disk, marked, with why."""

    margin: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="the target must reach the best so far plus this (negative: allow a drop)",
    )
    max_loops: float = Field(
        0.5, ge=0.0, le=1.0, description="largest share of looping held-out answers accepted"
    )
    max_mc_drop: float = Field(
        0.1, ge=0.0, le=1.0, description="largest fall in multiple-choice accuracy from the base"
    )
    max_perplexity_rise: float = Field(
        0.25, ge=0.0, description="largest relative rise in general-text perplexity (0.25 = 25%)"
    )
    max_bias_rise: float = Field(
        5.0, ge=0.0, le=100.0, description="largest rise in the CrowS-Pairs score, in points"
    )


class AuditConfig(Section):
    crows_pairs_file: str = Field("", description="CrowS-Pairs CSV to audit with; empty: no audit")
    max_pairs: int = Field(300, ge=0, description="stratified sample by bias type; 0: every pair")


class ActorsConfig(Section):
    generators: int = Field(2, ge=1)
    critics: int = Field(1, ge=1)
    generator_cpus: float = Field(0.5, ge=0.0)
    critic_cpus: float = Field(0.5, ge=0.0)
    trainer_cpus: float = Field(0.5, ge=0.0)
    generator_gpus: float = Field(0.0, ge=0.0, description="GPUs per generator actor")
    critic_gpus: float = Field(0.0, ge=0.0, description="GPUs per critic actor")
    trainer_gpus: float = Field(0.0, ge=0.0, description="GPUs of the trainer actor")
    generator_threads: int = Field(1, ge=1)
    critic_threads: int = Field(2, ge=1)
    trainer_threads: int = Field(2, ge=1)
    max_restarts: int = Field(3, ge=0, description="restarts of an actor that died, per run")
    task_retries: int = Field(3, ge=0, description="retries of a task whose actor died")


class Config(Section):
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    persona: PersonaConfig
    generate: GenerateConfig = GenerateConfig()
    critics: dict[str, CriticConfig]
    select: SelectConfig = SelectConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    audit: AuditConfig = AuditConfig()
    actors: ActorsConfig = ActorsConfig()

    @model_validator(mode="after")
    def _critics_make_sense(self) -> Config:
        enabled = [c for c in self.critics.values() if c.enabled]
        if not enabled:
            raise ValueError("critics: enable at least one critic")
        if sum(c.weight for c in enabled) <= 0:
            raise ValueError("critics: give at least one enabled critic a weight above 0")
        return self

    def enabled_critics(self) -> dict[str, CriticConfig]:
        """Enabled critics in config order, with the persona filled in where they refer to it."""
        out: dict[str, CriticConfig] = {}
        for name, c in self.critics.items():
            if not c.enabled:
                continue
            if isinstance(c, JudgeCriticConfig | PairwiseCriticConfig):
                c = c.model_copy(
                    update={"question": c.question.replace("{persona}", self.persona.description)}
                )
            if isinstance(c, BiasCriticConfig) and not c.question:
                c = c.model_copy(update={"question": self.eval.quality_question})
            if isinstance(c, ContrastCriticConfig) and not c.system_prompt:
                c = c.model_copy(update={"system_prompt": self.persona.system_prompt})
            out[name] = c
        return out


def _section_fields(loc: tuple) -> list[str]:
    """The known keys of the table at `loc`, for 'did you mean' suggestions."""
    if loc[0] == "critics":
        # (critics, NAME, KIND, key): pydantic puts the discriminator value in the path.
        kind = CRITIC_KINDS.get(str(loc[2])) if len(loc) >= 4 else None
        return list(kind.model_fields) if kind else []
    model: Any = Config
    for part in loc[:-1]:
        model = model.model_fields[part].annotation
    return list(model.model_fields)


def _as_written(loc: tuple) -> tuple:
    """The key path as the user wrote it: pydantic adds the critic kind after the critic name."""
    if len(loc) >= 3 and loc[0] == "critics" and str(loc[2]) in CRITIC_KINDS:
        return loc[:2] + loc[3:]
    return loc


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"])
        key = ".".join(str(p) for p in _as_written(loc)) or "(top level)"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _section_fields(loc), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"unknown key '{key}'{hint}")
        elif e["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            got = e.get("input")
            shown = repr(got) if not isinstance(got, dict) else "a table"
            lines.append(f"'{key}': {e['msg']} (got {shown})")
    return f"{source}: invalid config:\n  " + "\n  ".join(lines)


# Names the round's funnel uses for its own steps: a critic named so would overwrite one.
FUNNEL_STEPS = ("generated", "unparseable", "balance", "budget", "survivors")


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    critics = data.get("critics") or {}
    if not isinstance(critics, dict):
        raise ConfigError(f"{source}: 'critics' must be tables, one per critic ([critics.NAME])")
    taken = [name for name in critics if name in FUNNEL_STEPS]
    if taken:
        raise ConfigError(
            f"{source}: 'critics.{taken[0]}' is named like a step of the round's funnel "
            f"({', '.join(FUNNEL_STEPS)}): give the critic another name"
        )
    # A critic table named after a kind (`[critics.rules]`) needs no `kind` key.
    for name, table in critics.items():
        if isinstance(table, dict) and "kind" not in table:
            if name not in CRITIC_KINDS:
                kinds = ", ".join(f'"{k}"' for k in CRITIC_KINDS)
                raise ConfigError(
                    f"{source}: 'critics.{name}' needs a kind: add kind = one of {kinds}"
                )
            table["kind"] = name
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None


def _resolve_paths(cfg: Config, base: Path) -> Config:
    def absolute(p: str) -> str:
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    def model_ref(ref: str) -> str:
        # A model reference that names an existing folder relative to the config is a folder.
        if ref.startswith("embedded:") or ref == "policy":
            return ref
        candidate = (base / ref).expanduser()
        looks_local = ref.startswith((".", "/", "~")) or candidate.exists()
        return absolute(ref) if looks_local else ref

    critics = {
        name: c.model_copy(update={"judge": model_ref(c.judge)})
        if c.kind in ("judge", "pairwise")
        else c
        for name, c in cfg.critics.items()
    }
    crows = absolute(cfg.audit.crows_pairs_file) if cfg.audit.crows_pairs_file else ""
    real = absolute(cfg.train.real_file) if cfg.train.real_file else ""
    return cfg.model_copy(
        update={
            "run": cfg.run.model_copy(update={"runs_dir": absolute(cfg.run.runs_dir)}),
            "model": cfg.model.model_copy(
                update={
                    "policy": model_ref(cfg.model.policy),
                    "embedder": model_ref(cfg.model.embedder),
                }
            ),
            "generate": cfg.generate.model_copy(
                update={"seed_file": absolute(cfg.generate.seed_file)}
            ),
            "eval": cfg.eval.model_copy(update={"heldout_file": absolute(cfg.eval.heldout_file)}),
            "audit": cfg.audit.model_copy(update={"crows_pairs_file": crows}),
            "train": cfg.train.model_copy(update={"real_file": real}),
            "critics": critics,
        }
    )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and resolve a config file. Raises ConfigError with a fix-it message."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        # utf-8-sig: some Windows editors save UTF-8 with a byte-order mark, which TOML refuses.
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    cfg = parse_config(data, str(path))  # the file must be valid by itself
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        table = data
        for part in tables:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is a value, not a table")
        table[key] = value
    if overrides:
        cfg = parse_config(data, str(path))
    cfg = _resolve_paths(cfg, path.resolve().parent)
    files = [
        ("generate.seed_file", cfg.generate.seed_file),
        ("eval.heldout_file", cfg.eval.heldout_file),
    ]
    if cfg.audit.crows_pairs_file:  # empty: the audit is off
        files.append(("audit.crows_pairs_file", cfg.audit.crows_pairs_file))
    if cfg.train.real_file:
        files.append(("train.real_file", cfg.train.real_file))
    for label, file in files:
        if not Path(file).is_file():
            raise ConfigError(f"{path}: '{label}' names a file that does not exist: {file}")
    _check_rows_apart(cfg, path)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line. VALUE is read as a TOML value (numbers, booleans,
    quoted strings, arrays); anything that is not one is taken as a plain string, so paths need
    no quotes."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not all(key.strip().split(".")):
        raise ConfigError(f"--set {text!r}: write KEY=VALUE, for example --set train.epochs=1")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _check_rows_apart(cfg: Config, path: Path) -> None:
    """Seeds and held-out prompts read from one file must take disjoint row slices."""
    if cfg.generate.seed_file != cfg.eval.heldout_file:
        return
    (a, b), (c, d) = row_range(cfg.generate.rows), row_range(cfg.eval.rows)
    if (b is None or c < b) and (d is None or a < d):
        raise ConfigError(
            f"{path}: generate.seed_file and eval.heldout_file are one file and 'generate.rows' "
            f"({cfg.generate.rows or 'all'}) overlaps 'eval.rows' ({cfg.eval.rows or 'all'}): "
            'give them disjoint slices, e.g. "0:1000" and "1000:1032"'
        )


def dump_config(cfg: Config) -> str:
    return tomli_w.dumps(cfg.model_dump(mode="json"))
