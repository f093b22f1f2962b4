"""Throughput of the default run's critics on real candidates, one line per critic.

Instructions are self-instruct seed tasks and user-oriented instructions read from ../shared/data;
the real default model (embedded SmolLM2-135M) answers them once with the persona's system prompt,
generate.responses_per_prompt samples each at generate.max_new_tokens, as a round samples them.
The candidates are written to a JSONL in a temp folder, so a rerun can skip generation with
--responses. The panel is built as a critic actor builds it; each per-candidate critic is timed on
its own (after a warm-up on one prompt's candidates), then the whole panel.score, the dedup pass
(MiniLM embedding + near-duplicate judging, round 1: no history), the group balance and the
budgeted selection, in the order the critique stage runs them.

    HF_HUB_OFFLINE=1 python benchmarks/critic_speed.py                  # 64 candidates, config.toml
    HF_HUB_OFFLINE=1 python benchmarks/critic_speed.py --n 8 --responses /tmp/.../candidates.jsonl
    HF_HUB_OFFLINE=1 python benchmarks/critic_speed.py --threads 1 --config recipes/<recipe>.toml
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from critics.balance import balance_verdicts  # noqa: E402
from critics.base import Candidate, Verdict  # noqa: E402
from critics.bias import probes  # noqa: E402
from critics.dedup import candidate_text  # noqa: E402
from critics.panel import CriticPanel  # noqa: E402
from critics.select import combined_scores, decide, ranking  # noqa: E402
from generators.pool import Prompt, load_prompts  # noqa: E402
from generators.sampler import Generator, Sampling  # noqa: E402
from loop.config import BiasCriticConfig, Config, load_config  # noqa: E402
from loop.driver import resolve_paths  # noqa: E402
from loop.models import ModelPaths  # noqa: E402

T = TypeVar("T")
SOURCES = ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions_dev.jsonl")


def timed(work: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    out = work()
    return out, time.perf_counter() - started


def line(label: str, n: int, seconds: float, threads: int) -> str:
    # Rules, balance and selection take milliseconds: seconds to one decimal would read 0.0.
    took = f"{seconds:.1f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"
    figures = f"{took} | {n / max(seconds, 1e-9):,.1f} candidates/s"
    return f"{label} | {n} candidates | {figures} | {threads} threads"


def instructions(count: int, seed: int) -> list[Prompt]:
    """`count` real instructions, both files shuffled together so that each kind is present."""
    pool = [p for name in SOURCES for p in load_prompts(DATA / name, "seed", "benchmark")]
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.permutation(len(pool))[:count]]


def generate(cfg: Config, paths: ModelPaths, n: int, threads: int) -> list[Candidate]:
    """`n` candidates sampled as a round samples them: persona prompt, config sampling, base."""
    g = cfg.generate
    prompts = instructions(-(-n // g.responses_per_prompt), cfg.run.seed)
    generator = Generator(paths.policy, cfg.model.dtype, threads, cfg.model.trust_remote_code)
    sampling = Sampling(g.max_new_tokens, g.temperature, g.top_p, g.batch_size)
    candidates, seconds = timed(
        lambda: generator.respond(
            prompts, cfg.persona.system_prompt, g.responses_per_prompt, sampling,
            cfg.run.seed, None, 1, g.trim_truncated,
        )  # fmt: skip
    )
    candidates = candidates[:n]
    tokens = sum(c.tokens for c in candidates)
    print(
        f"{line('generate (not a critic)', n, seconds, threads)} | {tokens} tokens "
        f"({tokens / max(n, 1):.0f} per candidate, {tokens / max(seconds, 1e-9):.0f} tokens/s) "
        f"| {sum(not c.finished for c in candidates)} truncated",
        flush=True,
    )
    return candidates


def save_candidates(path: Path, candidates: Sequence[Candidate]) -> None:
    path.write_text("".join(json.dumps(asdict(c)) + "\n" for c in candidates), encoding="utf-8")


def load_candidates(path: Path, n: int) -> list[Candidate]:
    rows = [json.loads(s) for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    if len(rows) < n:
        raise SystemExit(f"{path} holds {len(rows)} candidates, fewer than --n {n}: lower --n")
    return [Candidate(**r) for r in rows[:n]]


def workload(kind: str, cands: Sequence[Candidate]) -> str:
    """What a critic's cost scales with beyond the candidate count, where that differs."""
    if kind != "bias":
        return ""
    # The bias judge reads only candidates that mention a group, once plus once per swap.
    found = probes(cands)
    return f" | {len(found)} swaps of {len({p.candidate for p in found})} candidates judged"


def per_critic(
    panel: CriticPanel, cfg: Config, cands: Sequence[Candidate], threads: int
) -> tuple[dict[str, list[Verdict]], float]:
    """Each per-candidate critic on its own, config order; one warm-up on the first prompt's
    samples first, so one-off setup (thread pools, the language model) is not charged."""
    kinds = {name: c.kind for name, c in cfg.enabled_critics().items()}
    warm = list(cands[: cfg.generate.responses_per_prompt])
    verdicts: dict[str, list[Verdict]] = {}
    total = 0.0
    for name, critic in panel.critics.items():
        critic.score(warm)
        verdicts[name], seconds = timed(lambda critic=critic: critic.score(cands))
        total += seconds
        passed = sum(v.passed for v in verdicts[name])
        label = line(f"{name} ({kinds[name]})", len(cands), seconds, threads)
        print(f"{label} | {passed} pass{workload(kinds[name], cands)}", flush=True)
    return verdicts, total


def after_scoring(
    panel: CriticPanel,
    cfg: Config,
    cands: Sequence[Candidate],
    verdicts: dict[str, list[Verdict]],
    threads: int,
) -> float:
    """The critique stage after the per-candidate critics, with the arguments the round
    passes in round 1 (no earlier survivors): dedup, group balance, budgeted selection."""
    critics, n = cfg.enabled_critics(), len(cands)
    combined = combined_scores(verdicts, {k: c.weight for k, c in critics.items()}, n)
    eligible = [all(v[i].passed for v in verdicts.values()) for i in range(n)]
    order, texts = ranking(combined), [candidate_text(c) for c in cands]

    _, seconds = timed(lambda: panel.embed(texts[:2]))
    print(f"embedder load + first call | {seconds:.1f} s (once per critic actor)")
    _, embed_seconds = timed(lambda: panel.embed(texts))
    print(line("  dedup embedding (MiniLM)", n, embed_seconds, threads))
    (dedup, vectors), dedup_seconds = timed(
        lambda: panel.dedup(cands, order, eligible, np.zeros((0, 0), np.float32), [])
    )
    label = "dedup pass (embedding + judge)"
    print(f"{line(label, n, dedup_seconds, threads)} | {sum(not v.passed for v in dedup)} dupes")
    ordered = {name: verdicts[name] for name in critics if name in verdicts}
    if panel.dedup_critic is not None:
        ordered[panel.dedup_critic.name] = dedup
    total = dedup_seconds

    bias = next((c for c in critics.values() if isinstance(c, BiasCriticConfig)), None)
    if bias is not None and bias.max_group_share < 1:
        passing = [all(v[i].passed for v in ordered.values()) for i in range(n)]
        ordered["balance"], seconds = timed(
            lambda: balance_verdicts(
                order, texts, passing, bias.max_group_share, bias.min_mentions,
                budget=cfg.select.budget,
            )  # fmt: skip
        )
        total += seconds
        print(line("balance (group shares)", n, seconds, threads))

    sel = cfg.select
    decisions, seconds = timed(
        lambda: decide(ordered, combined, sel.budget, sel.strategy, sel.diversity, vectors)
    )
    kept = sum(d.survivor for d in decisions)
    print(f"{line(f'select ({sel.strategy})', n, seconds, threads)} | {kept} survivors")
    return total + seconds


def critique(cfg: Config, paths: ModelPaths, cands: Sequence[Candidate], threads: int) -> None:
    m = cfg.model
    panel, seconds = timed(
        lambda: CriticPanel(
            cfg.enabled_critics(), paths.policy, paths.embedder, m.dtype, paths.judges,
            threads, m.trust_remote_code, cfg.audit, cfg.run.seed,
        )  # fmt: skip
    )
    print(f"panel load | {seconds:.1f} s (once per critic actor)")
    panel.policy.set_adapter(None)  # round 1: the current policy is the base

    verdicts, critics_seconds = per_critic(panel, cfg, cands, threads)
    _, score_seconds = timed(lambda: panel.score(cands, None))
    print(line("panel.score (all per-candidate critics)", len(cands), score_seconds, threads))
    print(f"  sum of the per-critic lines above: {critics_seconds:.1f} s")
    rest = after_scoring(panel, cfg, cands, verdicts, threads)
    print(line("total critique stage (panel.score + the rest)", len(cands), score_seconds + rest,
               threads))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.toml")
    parser.add_argument("--n", type=int, default=64, help="candidates to score")
    parser.add_argument("--threads", type=int, help="torch threads; default actors.critic_threads")
    parser.add_argument(
        "--responses", type=Path, help="a candidates JSONL an earlier run wrote: skip generation"
    )
    args = parser.parse_args()
    cfg = load_config(args.config)
    threads = args.threads or cfg.actors.critic_threads
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} | {os.cpu_count()} CPUs")
    print(f"critics in order: {', '.join(cfg.enabled_critics())} | config {args.config}")

    paths = resolve_paths(cfg)
    if args.responses is not None:
        candidates = load_candidates(args.responses, args.n)
    else:
        candidates = generate(cfg, paths, args.n, threads)
        out = Path(tempfile.mkdtemp(prefix="selfloop-critics-")) / "candidates.jsonl"
        save_candidates(out, candidates)
        print(f"candidates written to {out} (reuse with --responses)")
    critique(cfg, paths, candidates, threads)
    # Other work on the machine slows every line; the load at both ends says whether it did.
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
