"""Ray at the edge: the plain generator, critic and trainer classes launched as actors.

Actors ask for the logical CPUs the config gives them and set their own torch thread counts.
Stages never overlap (generation and training slow each other several-fold on a small node),
so the logical CPUs of all actors may add up to the node's cores while each stage uses them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from critics.panel import CriticPanel
from generators.sampler import Generator
from loop.config import Config
from loop.models import ModelPaths
from loop.trainer import Trainer


def quiet_worker() -> None:
    """Runs first in every Ray worker: library progress bars would flood the driver's log."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()


@dataclass
class Actors:
    generators: list[Any]
    critics: list[Any]
    trainer: Any

    def kill(self) -> None:
        for a in [*self.generators, *self.critics, self.trainer]:
            ray.kill(a)


def launch(cfg: Config, paths: ModelPaths) -> Actors:
    a, m = cfg.actors, cfg.model
    # A dead actor is restarted with its constructor's arguments and its task retried; tasks
    # name the adapter they need, so a restarted actor holds no stale state.
    faults = {"max_restarts": a.max_restarts, "max_task_retries": a.task_retries}
    gen_cls = ray.remote(Generator).options(num_cpus=a.generator_cpus, **faults)
    critic_cls = ray.remote(CriticPanel).options(num_cpus=a.critic_cpus, **faults)
    trainer_cls = ray.remote(Trainer).options(num_cpus=a.trainer_cpus, max_concurrency=2, **faults)
    generators = [
        gen_cls.remote(paths.policy, m.dtype, a.generator_threads, m.trust_remote_code)
        for _ in range(a.generators)
    ]
    critics = [
        critic_cls.remote(
            cfg.enabled_critics(),
            paths.policy,
            paths.embedder,
            m.dtype,
            paths.judges,
            a.critic_threads,
            m.trust_remote_code,
            cfg.audit,
            cfg.run.seed,
        )
        for _ in range(a.critics)
    ]
    trainer = trainer_cls.remote(paths.policy, a.trainer_threads, m.trust_remote_code)
    return Actors(generators, critics, trainer)
