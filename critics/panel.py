"""The critic panel: every enabled critic of a run, held by one critic actor.

Per-candidate critics (rules, judges, verifier) score shards of candidates in parallel across
actors; the set-level dedup runs on one actor because it needs the whole round in rank order. The
pairwise critic compares the responses to one prompt with each other, so it needs each prompt's
candidates in one shard: siblings in another shard are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from critics.base import Candidate, Critic, Verdict
from critics.bias import BiasCritic
from critics.contrast import ContrastCritic
from critics.crows import CrowsPair, crows_score, load_crows
from critics.dedup import DedupCritic, Embedder, candidate_text
from critics.judge import JudgeCritic, p_yes
from critics.pairwise import PairResult, PairwiseCritic, compare
from critics.rules import RulesCritic
from critics.verifier import VerifierCritic
from loop import explain, retention
from loop.config import (
    AuditConfig,
    BiasCriticConfig,
    ContrastCriticConfig,
    CriticBase,
    DedupCriticConfig,
    JudgeCriticConfig,
    PairwiseCriticConfig,
    RulesCriticConfig,
    VerifierCriticConfig,
)
from loop.policy import Policy


class CriticPanel:
    def __init__(
        self,
        critics: Mapping[str, CriticBase],
        policy_path: str,
        embedder_path: str,
        dtype: str,
        judge_paths: Mapping[str, str] | None = None,  # judge ref -> resolved folder
        threads: int | None = None,
        trust_remote_code: bool = False,
        audit: AuditConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.policy = Policy(policy_path, dtype, threads, trust_remote_code)
        self.crows_pairs: list[CrowsPair] = []
        if audit is not None and audit.crows_pairs_file:
            self.crows_pairs = load_crows(audit.crows_pairs_file, audit.max_pairs or None, seed)
        self._embedder_path = embedder_path
        self._embedder: Embedder | None = None
        judges = {"policy": self.policy}
        for ref, path in (judge_paths or {}).items():
            judges[ref] = Policy(path, dtype, None, trust_remote_code)
        self.critics: dict[str, Critic] = {}
        self.dedup_critic: DedupCritic | None = None
        for name, cfg in critics.items():
            if isinstance(cfg, RulesCriticConfig):
                self.critics[name] = RulesCritic(name, cfg)
            elif isinstance(cfg, JudgeCriticConfig):
                self.critics[name] = JudgeCritic(
                    name, cfg.question, cfg.threshold, judges[cfg.judge]
                )
            elif isinstance(cfg, ContrastCriticConfig):
                self.critics[name] = ContrastCritic(
                    name, cfg.system_prompt, cfg.scale, cfg.threshold, self.policy
                )
            elif isinstance(cfg, PairwiseCriticConfig):
                self.critics[name] = PairwiseCritic(
                    name, cfg.question, cfg.threshold, judges[cfg.judge]
                )
            elif isinstance(cfg, VerifierCriticConfig):
                self.critics[name] = VerifierCritic(name, cfg.checker, cfg.threshold)
            elif isinstance(cfg, DedupCriticConfig):
                self.dedup_critic = DedupCritic(name, cfg.threshold, cfg.index)
            elif isinstance(cfg, BiasCriticConfig):
                self.critics[name] = BiasCritic(name, cfg, self.policy)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self._embedder_path)
        return self._embedder

    def score(
        self, candidates: Sequence[Candidate], adapter: str | None
    ) -> dict[str, list[Verdict]]:
        """Every per-candidate critic's verdicts. The self-critique judge is the current policy,
        base + `adapter`, named in each call so that a restarted actor judges with it too."""
        self.policy.set_adapter(adapter)
        return {name: critic.score(candidates) for name, critic in self.critics.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def dedup(
        self,
        candidates: Sequence[Candidate],
        order: Sequence[int],
        eligible: Sequence[bool],
        history: np.ndarray,
        history_ids: Sequence[str],
    ) -> tuple[list[Verdict], np.ndarray]:
        """Dedup verdicts, and the candidates' embeddings (kept with survivors for later rounds)."""
        vectors = self.embed([candidate_text(c) for c in candidates])
        if self.dedup_critic is None:
            return [], vectors
        verdicts = self.dedup_critic.judge(
            candidates, vectors, order, eligible, history, history_ids
        )
        return verdicts, vectors

    def rate(
        self, question: str, pairs: Sequence[tuple[str, str]], adapter: str | None
    ) -> list[float]:
        """P(yes) for `question` from a fixed judge: the base model plus `adapter` (None: base)."""
        self.policy.set_adapter(adapter)
        return p_yes(self.policy, question, pairs)

    def compare(
        self, question: str, triples: Sequence[tuple[str, str, str]], adapter: str | None
    ) -> list[PairResult]:
        """Pairwise (instruction, a, b) verdicts, both orders, from the base model plus `adapter`
        (None: base): for held-out win rates of the adapter's answers against the base's."""
        self.policy.set_adapter(adapter)
        return compare(self.policy, question, triples)

    def crows(
        self, pairs: Sequence[CrowsPair], adapter: str | None, prefix: str = ""
    ) -> dict[str, dict]:
        """The CrowS-Pairs audit of base + `adapter` (None: base), sentences after `prefix`."""
        self.policy.set_adapter(adapter)
        return crows_score(self.policy, pairs, prefix)

    def audit(self, adapter: str | None, system_prompt: str | None = None) -> dict[str, Any]:
        """What an arm's weights kept and gained besides the target: general-text perplexity,
        multiple-choice accuracy and, with a CrowS-Pairs file, the bias score per type; each
        with its interval, plus the per-item values under "items" for paired comparisons."""
        ret = self.retention(adapter, system_prompt)
        out: dict[str, Any] = {
            "perplexity": ret["text"]["perplexity"],
            "mc_accuracy": ret["mc"]["accuracy"],
            "items": {"text": ret["text"]["items"], "mc": ret["mc"]["items"]},
        }
        if self.crows_pairs:
            crows = crows_score(self.policy, self.crows_pairs, system_prompt or "")
            out |= {"crows": crows["overall"], "crows_by_type": crows["by_type"]}
            out["items"]["crows"] = crows["items"]
        return out

    def retention(self, adapter: str | None, system_prompt: str | None = None) -> dict[str, Any]:
        """Perplexity and multiple-choice figures of base + `adapter` (None: the base) on the
        shipped retention data, per item kept; loop.retention.compare() pairs two of them."""
        self.policy.set_adapter(adapter)
        return retention.retention(
            self.policy, retention.load_passages(), retention.load_questions(), system_prompt
        )

    def explain(self, adapter: str, max_new_tokens: int, k: int = 5) -> dict[str, Any]:
        """Update norms, probe KL and the k most changed probe answers of `adapter`."""
        return explain.explain(self.policy, adapter, explain.load_probes(), max_new_tokens, k)
