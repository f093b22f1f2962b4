"""Ray at the edge: the plain generator, critic and trainer classes launched as actors.

Actors ask for the logical CPUs and GPUs the config gives them and set their own torch thread
counts. Stages never overlap (generation and training slow each other several-fold on a small
node), so the logical CPUs of all actors may add up to the node's cores while each stage uses
them all.

On a cluster an actor may start on a node other than the driver's. The thin subclasses here
resolve the models again on their own node, take the audit's CSV by value, and say which node
they run on; adapters travel as `loop.transport` records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from critics.panel import CriticPanel
from generators.sampler import Generator
from loop.config import AuditConfig, Config, ModelConfig, TrainConfig
from loop.errors import ConfigError
from loop.models import ModelPaths, cache_dir, resolve_model
from loop.trainer import Trainer, TrainResult
from loop.transport import Files, Outbox, Shipped, local, node_id, outbox_path, send_back


def quiet_worker() -> None:
    """Runs first in every Ray worker: library progress bars would flood the driver's log."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def models_here(paths: ModelPaths, m: ModelConfig) -> ModelPaths:
    """The driver's resolved folders, or where one is missing on this node, the same
    reference resolved here (the embedded default converts into this node's cache)."""

    def here(path: str, ref: str, key: str) -> str:
        if Path(path).is_dir():
            return path
        try:
            return resolve_model(ref, key)
        except ConfigError as err:
            raise ConfigError(
                f"on Ray node {node_id()}: {err}. Every node resolves the models itself: "
                "install the model there at the same path, or name a hub id or embedded model"
            ) from None

    judges = {ref: here(p, ref, f"judge {ref}") for ref, p in paths.judges.items()}
    return ModelPaths(
        here(paths.policy, m.policy, "model.policy"),
        here(paths.embedder, m.embedder, "model.embedder"),
        judges,
    )


class Placed:
    def node(self) -> str:
        """The Ray node id this actor runs on."""
        return node_id()


class GeneratorActor(Generator, Placed):
    def __init__(self, paths: ModelPaths, m: ModelConfig, threads: int) -> None:
        super().__init__(models_here(paths, m).policy, m.dtype, threads, m.trust_remote_code)


class CriticActor(CriticPanel, Placed):
    def __init__(
        self,
        cfg: Config,
        paths: ModelPaths,
        crows_csv: bytes | None,  # the audit's CSV by value: its path is the driver's
    ) -> None:
        here, m, a = models_here(paths, cfg.model), cfg.model, cfg.actors
        super().__init__(
            cfg.enabled_critics(), here.policy, here.embedder, m.dtype, here.judges,
            a.critic_threads, m.trust_remote_code, _audit_here(cfg.audit, crows_csv),
            cfg.run.seed,
        )  # fmt: skip

    def explain(self, adapter: str | Shipped, max_new_tokens: int, k: int = 5) -> dict[str, Any]:
        return super().explain(local(adapter), max_new_tokens, k)


def _audit_here(audit: AuditConfig, csv: bytes | None) -> AuditConfig:
    if csv is None or Path(audit.crows_pairs_file).is_file():
        return audit
    path = cache_dir() / "shipped" / f"{hashlib.sha256(csv).hexdigest()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv)
    return audit.model_copy(update={"crows_pairs_file": str(path)})


class TrainerActor(Trainer, Placed):
    def __init__(self, paths: ModelPaths, m: ModelConfig, threads: int) -> None:
        super().__init__(models_here(paths, m).policy, threads, m.trust_remote_code)

    def train_to(
        self,
        examples: Sequence[dict[str, Any]],
        cfg: TrainConfig,
        box: Outbox,
        previous: Shipped | None,
        seed: int,
        pairs: Sequence[dict[str, Any]] | None,
    ) -> tuple[TrainResult, Files | None]:
        """train() into `box`; the saved folder's files too when the driver cannot read them."""
        result = self.train(examples, cfg, outbox_path(box), local(previous), seed, pairs)
        return result, send_back(box, result.adapter)


@dataclass
class Actors:
    generators: list[Any]
    critics: list[Any]
    trainer: Any
    # Constructor arguments in the object store, held so that a restarted actor finds them.
    held: list[Any] = field(default_factory=list)

    def kill(self) -> None:
        for a in [*self.generators, *self.critics, self.trainer]:
            ray.kill(a)

    def nodes(self) -> dict[str, Any]:
        """Which Ray node each actor runs on (waits for every actor to start)."""
        return {
            "generators": ray.get([a.node.remote() for a in self.generators]),
            "critics": ray.get([a.node.remote() for a in self.critics]),
            "trainer": ray.get(self.trainer.node.remote()),
        }


def launch(cfg: Config, paths: ModelPaths) -> Actors:
    a = cfg.actors
    # A dead actor is restarted with its constructor's arguments and its task retried; tasks
    # name the adapter they need, so a restarted actor holds no stale state.
    faults = {"max_restarts": a.max_restarts, "max_task_retries": a.task_retries}
    gen_cls = ray.remote(GeneratorActor).options(
        num_cpus=a.generator_cpus, num_gpus=a.generator_gpus, **faults
    )
    critic_cls = ray.remote(CriticActor).options(
        num_cpus=a.critic_cpus, num_gpus=a.critic_gpus, **faults
    )
    trainer_cls = ray.remote(TrainerActor).options(
        num_cpus=a.trainer_cpus, num_gpus=a.trainer_gpus, max_concurrency=2, **faults
    )
    crows = cfg.audit.crows_pairs_file
    csv = ray.put(Path(crows).read_bytes() if crows else None)
    generators = [
        gen_cls.remote(paths, cfg.model, a.generator_threads) for _ in range(a.generators)
    ]
    critics = [critic_cls.remote(cfg, paths, csv) for _ in range(a.critics)]
    trainer = trainer_cls.remote(paths, cfg.model, a.trainer_threads)
    return Actors(generators, critics, trainer, [csv])
