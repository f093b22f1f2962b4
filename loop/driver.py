"""The driver: validates everything, starts Ray and the actors, and runs rounds until done.

Validation happens before anything is written: a bad config, seed file, held-out file or model
reference stops the run with a message and leaves the run folder untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from critics.crows import load_crows
from generators.pool import Prompt, check_split, load_prompts
from loop.config import (
    Config,
    JudgeCriticConfig,
    PairwiseCriticConfig,
    dump_config,
    load_config,
)
from loop.errors import ConfigError, RunStoreError
from loop.mix import load_real
from loop.models import ModelPaths, lora_layers, resolve_model
from loop.stop import Stopper, StopRequested
from loop.store import RunStore, write_json
from loop.strategy import check_strategy

log = logging.getLogger("selfloop")

RoundCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads besides its config, loaded and checked up front."""

    seeds: list[Prompt]
    heldout: list[Prompt]
    models: ModelPaths


def load_pools(cfg: Config) -> tuple[list[Prompt], list[Prompt]]:
    """The seed prompts and the held-out prompts, each read with its section's fields and rows."""
    g, e = cfg.generate, cfg.eval
    seeds = load_prompts(
        g.seed_file, "seed", "generate.seed_file", g.instruction_field, g.reference_field, g.rows
    )
    heldout = load_prompts(
        e.heldout_file, "heldout", "eval.heldout_file", e.instruction_field, e.reference_field,
        e.rows,
    )  # fmt: skip
    return seeds, heldout


def load_inputs(cfg: Config, address: str | None = None) -> Inputs:
    """`address`: the Ray cluster the run joins (None: a local one), whose resources are
    checked instead of this machine's."""
    seeds, heldout = load_pools(cfg)
    check_split(seeds, heldout)
    check_resources(cfg, address)
    check_strategy(cfg.train.strategy)
    # Files that actors read later fail here instead, before anything is written.
    if cfg.train.real_share > 0:
        load_real(cfg.train.real_file)
    if cfg.audit.crows_pairs_file:
        load_crows(cfg.audit.crows_pairs_file)
    models = resolve_paths(cfg)
    check_target_modules(cfg, models.policy)
    return Inputs(seeds, heldout, models)


def check_target_modules(cfg: Config, policy: str) -> None:
    """Every train.target_modules name must name layers of the policy as PEFT matches them (the
    whole dotted name or its last parts), or the first round fails only when it trains."""
    if cfg.train.strategy == "full":
        return  # every weight trains; the names are not used
    layers = lora_layers(policy, cfg.model.trust_remote_code, "model.policy")
    unknown = [
        t
        for t in cfg.train.target_modules
        if not any(n == t or n.endswith(f".{t}") for n in layers)
    ]
    if unknown:
        names = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in layers}))
        raise ConfigError(
            f"'train.target_modules': no layer of {cfg.model.policy} that a LoRA can train is "
            f"named {' or '.join(map(repr, unknown))}; its layers are named {names}"
        )


def resolve_paths(cfg: Config) -> ModelPaths:
    judges = {
        c.judge: resolve_model(c.judge, f"critics.{name}.judge")
        for name, c in cfg.enabled_critics().items()
        if isinstance(c, JudgeCriticConfig | PairwiseCriticConfig) and c.judge != "policy"
    }
    return ModelPaths(
        policy=resolve_model(cfg.model.policy, "model.policy"),
        embedder=resolve_model(cfg.model.embedder, "model.embedder"),
        judges=judges,
    )


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.run.runs_dir) / cfg.run.name


def prepare_new_run(cfg: Config, run_dir: Path, overwrite: bool) -> RunStore:
    """Create the run folder with the frozen config, refusing to clobber a different run."""
    store = RunStore(run_dir)
    if store.exists():
        if not overwrite:
            same = store.frozen_config() == dump_config(cfg)
            hint = (
                f"continue it with `selfloop resume {run_dir}`"
                if same
                else "its config differs from this one"
            )
            raise RunStoreError(
                f"{run_dir} already holds a run ({hint}); pass --overwrite to replace it, "
                "or choose another --run-dir"
            )
        with store.lock():
            pass  # refuse to delete a run that another process is writing
        shutil.rmtree(run_dir)
    elif run_dir.is_file():
        raise RunStoreError(f"{run_dir} is a file, not a folder; choose another --run-dir")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunStoreError(f"{run_dir} exists and is not a run folder; choose another --run-dir")
    store.create(dump_config(cfg))
    return store


def open_run(run_dir: Path) -> tuple[RunStore, Config]:
    store = RunStore(run_dir).require()
    return store, load_config(store.config_path)


def check_from_round(store: RunStore, from_round: int) -> None:
    last = max(store.rounds_on_disk(), default=0)
    if not 1 <= from_round <= last + 1:
        raise RunStoreError(
            f"--from-round {from_round} is out of range: {store.root} has rounds 1..{last}, "
            f"so it can restart from 1 to {last + 1}"
        )


def branch(store: RunStore, from_round: int) -> Path | None:
    """Set rounds >= from_round aside so that the run continues from round from_round."""
    check_from_round(store, from_round)
    return store.move_aside(from_round)


def first_open_round(store: RunStore) -> int:
    done = set(store.completed_rounds())
    k = 1
    while k in done:
        k += 1
    return k


def execute(
    store: RunStore,
    cfg: Config,
    inputs: Inputs,
    rounds: int,
    progress: bool = True,
    on_round: RoundCallback | None = None,
    address: str | None = None,
    from_round: int | None = None,
) -> list[dict[str, Any]]:
    """Run rounds first_open_round..rounds, after setting rounds >= from_round aside if given.
    Stops cleanly at a safe point on Ctrl-C, SIGTERM or `selfloop stop` by raising
    StopRequested, whose exit code the command exits with."""
    import ray

    from loop.actors import launch
    from loop.round import RoundRunner

    stopper = Stopper(store.stop_request).install()
    done: list[dict[str, Any]] = []
    try:
        with store.lock():
            store.stop_request.unlink(missing_ok=True)  # a request left from an earlier run
            if from_round is not None:
                aside = branch(store, from_round)
                if aside:
                    log.info("rounds from %d kept aside in %s", from_round, aside)
            # state.json is derived from the round records: rewrite it now, or rounds a branch
            # just set aside stay listed until the next commit, and chat and export follow it.
            store.write_state(_state(store, cfg, rounds))
            _start_ray(address)
            stopper.install()
            check_cluster(cfg, ray.nodes())
            stopper.check()  # asked while Ray started: stop before the actors load models
            actors = launch(cfg, inputs.models)
            write_json(store.root / "actors.json", placement(actors))
            runner = RoundRunner(
                cfg, store, actors, inputs.seeds, inputs.heldout, stopper, progress
            )
            for k in range(first_open_round(store), rounds + 1):
                metrics = runner.run(k)
                done.append(metrics)
                store.write_state(_state(store, cfg, rounds))
                if on_round:
                    on_round(metrics)
    except StopRequested:
        log.warning("stopped at a safe point; continue with `selfloop resume %s`", store.root)
        raise
    except KeyboardInterrupt:
        log.warning("stopped at once; continue with `selfloop resume %s`", store.root)
        raise
    finally:
        stopper.restore()
        if ray.is_initialized():
            ray.shutdown()
    return done


def check_resources(cfg: Config, address: str | None = None) -> None:
    """Every actor must find room before anything is written, or Ray waits for it forever: on
    this machine, as the local Ray will see it, or on the cluster at `address`, joined for a
    moment to read its nodes."""
    if address is None:
        check_cluster(cfg, [this_machine()], local=True)
        return
    import ray

    _start_ray(address)
    try:
        nodes = ray.nodes()
    finally:
        ray.shutdown()  # only disconnects: a joined cluster keeps running
    check_cluster(cfg, nodes)


def this_machine() -> dict[str, Any]:
    """This machine as ray.nodes() lists the local Ray that _start_ray starts: every CPU, and
    the GPUs that torch can use."""
    import torch

    cpus, gpus = float(os.cpu_count() or 1), float(torch.cuda.device_count())
    return {"Alive": True, "Resources": {"CPU": cpus, "GPU": gpus}}


_DEMANDS = (("generator", "generators"), ("critic", "critics"), ("trainer", None))


def check_cluster(cfg: Config, nodes: list[dict[str, Any]], local: bool = False) -> None:
    """Every actor must fit on one alive node, and all of them in the cluster together, or
    Ray waits for resources forever. `nodes` is ray.nodes(); `local`: they are this machine."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    largest, whole = ("this machine",) * 2 if local else ("the largest Ray node", "the Ray cluster")
    a = cfg.actors
    for resource, unit in (("CPU", "cpus"), ("GPU", "gpus")):
        total = sum(r.get(resource, 0.0) for r in alive)
        biggest = max((r.get(resource, 0.0) for r in alive), default=0.0)
        need = 0.0
        for role, count_key in _DEMANDS:
            each = getattr(a, f"{role}_{unit}")
            need += each * (getattr(a, count_key) if count_key else 1)
            if each > biggest:
                raise ConfigError(
                    f"'actors.{role}_{unit}' = {each} but {largest} has {biggest:g} "
                    f"{resource}s; lower it" + ("" if local else ", or add a node with that many")
                )
        if need > total + 1e-9:
            raise ConfigError(
                f"the actors ask for {need:g} {resource}s in all and {whole} has {total:g}; "
                f"lower actors.*_{unit} or the actor counts (actors.generators, actors.critics)"
                + ("" if local else ", or add nodes")
            )


def placement(actors: Any) -> dict[str, Any]:
    """Where the driver and every actor run, as Ray node ids with each node's address."""
    import ray

    from loop.transport import node_id

    return {
        "driver": node_id(),
        **actors.nodes(),
        "nodes": {n["NodeID"]: n.get("NodeManagerAddress") for n in ray.nodes() if n["Alive"]},
    }


def _start_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at `address` ("auto" or HOST:PORT). A joined
    cluster is never stopped: ray.shutdown() at the end only disconnects this driver."""
    import ray

    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    for key in ("HF_HUB_OFFLINE", "SELFLOOP_CACHE", "HF_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    # Workers import the driver's checkout of selfloop first, not whichever copy is installed.
    source = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": os.cpu_count()}
    ray.init(
        **kwargs,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": env, "worker_process_setup_hook": "loop.actors.quiet_worker"},
        log_to_driver=True,
    )


def _state(store: RunStore, cfg: Config, target: int) -> dict[str, Any]:
    rounds = [store.round_record(k) for k in store.completed_rounds()]
    best = store.best_accepted(cfg.eval.target)
    return {
        "target_rounds": target,
        "completed": [r["round"] for r in rounds],
        "accepted": [r["round"] for r in rounds if r["status"] == "accepted"],
        "policy_adapter": f"round_{best:03d}/adapter" if best is not None else None,
    }
