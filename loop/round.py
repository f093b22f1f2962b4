"""One round of the loop: prompts, generate, critique, train, evaluate, commit.

Each stage writes its data into the round folder and then its completion record; a stage whose
record exists is not run again, so a resumed round redoes at most the stage that was in flight.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import ray
from tqdm.auto import tqdm

from critics.balance import balance_verdicts
from critics.base import Candidate, Verdict
from critics.dedup import candidate_text
from critics.diversity import diversity_metrics
from critics.judge import length_bias
from critics.rules import words
from critics.select import combined_scores, decide, funnel, ranking
from critics.verifier import check
from generators.pool import Prompt, normalise
from generators.sampler import Sampling
from generators.self_instruct import requests, screen
from loop import gate
from loop.actors import Actors
from loop.config import BiasCriticConfig, Config, DedupCriticConfig
from loop.evaluate import marker_pattern, paired_gain, persona_score, summarize
from loop.mix import load_real, mix
from loop.pairs import build_pairs
from loop.retention import paired_difference, perplexity_ratio
from loop.stats import estimate
from loop.stop import Stopper
from loop.store import RunStore, read_json, write_json
from loop.transport import Outbox, Shipper, node_id, unpack

log = logging.getLogger("selfloop")

STAGES = ("prompts", "generate", "critique", "train", "evaluate")


def derive_seed(*parts: object) -> int:
    """A seed from the run seed, the round and the piece of work, never from call order."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# A generator's piece of work holds this many batches: the decode loop refills a row that has
# finished with the piece's next prompt, which a piece of one batch could not do.
BATCHES_PER_PIECE = 4


def spread(items: Sequence[Any], size: int, workers: int) -> list[Sequence[Any]]:
    """Chunks of at most `size`, and at least one per worker while the items last: a round's
    work smaller than a batch per actor would otherwise leave actors idle."""
    return chunks(items, max(1, min(size, -(-len(items) // workers))))


def with_unparseable(steps: dict[str, int], dropped: dict[str, int]) -> dict[str, int]:
    """The round's funnel from the first thing the model wrote: a self-written instruction that
    did not parse is a generated sample that never became a candidate."""
    lost = dropped.get("unparseable", 0)
    return {"generated": steps["generated"] + lost, "unparseable": lost} | {
        k: v for k, v in steps.items() if k != "generated"
    }


def without_items(figures: dict[str, Any]) -> dict[str, Any]:
    """Eval figures for metrics.json: the per-item values stay in the stage record."""
    return {
        arm: {k: v for k, v in fig.items() if k != "items"} if isinstance(fig, dict) else fig
        for arm, fig in figures.items()
    }


def retention_change(base: dict[str, Any], adapter: dict[str, Any]) -> dict[str, Any]:
    """What the adapter kept against the base, paired item by item: perplexity ratio on general
    text, change in multiple-choice accuracy and in the CrowS-Pairs score (points)."""
    b, a = base["items"], adapter["items"]
    out = {
        "perplexity_ratio": perplexity_ratio({"items": b["text"]}, {"items": a["text"]}),
        "mc_accuracy": paired_difference(
            [i["correct"] for i in b["mc"]], [i["correct"] for i in a["mc"]]
        ),
    }
    if "crows" in b and "crows" in a:
        diff = paired_difference(b["crows"], a["crows"])
        out["crows"] = {k: v * 100 if k != "n" else v for k, v in diff.items()}
    return out


def prompt_shards(candidates: Sequence[Candidate], n: int) -> list[list[Candidate]]:
    """At most n shards of about equal size, in order, never splitting a prompt's samples."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.prompt_id, []).append(c)
    size = max(1, -(-len(candidates) // max(n, 1)))
    shards: list[list[Candidate]] = [[]]
    for group in groups.values():
        if shards[-1] and len(shards[-1]) + len(group) > size and len(shards) < n:
            shards.append([])
        shards[-1].extend(group)
    return [s for s in shards if s]


class RoundRunner:
    def __init__(
        self,
        cfg: Config,
        store: RunStore,
        actors: Actors,
        seeds: list[Prompt],
        heldout: list[Prompt],
        stopper: Stopper,
        progress: bool = True,
    ) -> None:
        self.cfg, self.store, self.actors = cfg, store, actors
        self.seeds, self.heldout = seeds, heldout[: cfg.eval.max_prompts]
        self.stopper, self.progress = stopper, progress
        self.real_rows = load_real(cfg.train.real_file) if cfg.train.real_share > 0 else []
        self.markers = marker_pattern(cfg.persona.markers)
        # Every actor call names its adapter as a record that any node can load.
        self.ship = Shipper().ship

    # ---- the recipe ----------------------------------------------------------------------

    def run(self, k: int) -> dict[str, Any]:
        """Run (or finish) round k and return its metrics."""
        # The policy that generates and judges is the last accepted round's.
        adapter = self.policy_adapter = self.accepted_adapter(before=k)
        records: dict[str, dict[str, Any]] = {}

        # Prompts: a sample of the pool plus instructions the model writes itself.
        records["prompts"] = self._stage(k, "prompts", lambda: self._prompts(k))
        # Candidates: several sampled responses per prompt, with the persona's system prompt.
        records["generate"] = self._stage(k, "generate", lambda: self._generate(k))
        # Critique: every critic scores every candidate; thresholds, dedup and budget select.
        records["critique"] = self._stage(k, "critique", lambda: self._critique(k))
        # Train on the survivors without the system prompt, so the voice moves into the weights.
        records["train"] = self._stage(k, "train", lambda: self._train(k, adapter))
        # Evaluate the new adapter against the base on prompts it never trained on.
        records["evaluate"] = self._stage(
            k, "evaluate", lambda: self._evaluate(k, records["train"])
        )
        # Commit: the gate decides whether the next round builds on this adapter.
        return self._commit(k, adapter, records)

    def _stage(self, k: int, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = self.store.stage_record(k, name)
        if done is not None:
            reused = {"round": k, "stage": name}
            log.info("round %d | %s | done earlier, reused", k, name, extra=reused)
            return done
        self.stopper.check()
        started = time.perf_counter()
        record = work()
        record["seconds"] = round(time.perf_counter() - started, 2)
        self.store.write_stage_record(k, name, record)
        summary, seconds = record.get("summary", ""), record["seconds"]
        fields = {"round": k, "stage": name, "summary": summary, "seconds": seconds}
        log.info("round %d | %s | %s | %.1fs", k, name, summary, seconds, extra=fields)
        return record

    # ---- history -------------------------------------------------------------------------

    def accepted_rounds(self, before: int) -> list[int]:
        return [
            j
            for j in self.store.completed_rounds()
            if j < before and self.store.round_record(j)["status"] == "accepted"
        ]

    def accepted_adapter(self, before: int) -> str | None:
        """The best accepted adapter so far: with a negative gate.margin a later accepted round
        may score below an earlier one, and the loop builds on the better."""
        k = self.store.best_accepted(self.cfg.eval.target, before)
        return None if k is None else str(self.store.round_dir(k) / "adapter")

    def _earlier_survivors(self, before: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for j in self.accepted_rounds(before):
            rows += self.store.load_rows(self.store.dataset(j, "survivors"))
        return rows

    # ---- stages --------------------------------------------------------------------------

    def _fan_out(
        self, pool: list[Any], work: Sequence[Any], call: Callable[[Any, Any, int], Any], desc: str
    ) -> list[Any]:
        """Hand pieces of work to actors round-robin; results come back in work order."""
        futures = [call(pool[i % len(pool)], piece, i) for i, piece in enumerate(work)]
        index = {f: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        pending = list(futures)
        with tqdm(
            total=len(futures), desc=desc, unit="batch", disable=not self.progress, leave=False
        ) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                results[index[ready[0]]] = ray.get(ready[0])
                bar.update(1)
        return results

    def _prompts(self, k: int) -> dict[str, Any]:
        g = self.cfg.generate
        rng = random.Random(derive_seed(self.cfg.run.seed, k, "prompts"))
        pool = self.seeds + [
            Prompt(r["prompt_id"], r["instruction"], "self-instruct")
            for r in self._earlier_survivors(k)
            if r["source"] == "self-instruct"
        ]
        pool = list({normalise(p.instruction): p for p in pool}.values())
        sampled = rng.sample(pool, min(g.prompts_per_round, len(pool)))

        reqs = requests(pool, g.new_instructions, g.shots, rng, k)
        texts = self._fan_out(
            self.actors.generators,
            spread(reqs, BATCHES_PER_PIECE * g.batch_size, len(self.actors.generators)),
            lambda actor, piece, i: actor.write_instructions.remote(
                piece,
                Sampling(g.instruction_max_tokens, g.temperature, g.top_p, g.batch_size),
                derive_seed(self.cfg.run.seed, k, "instructions", i),
                self.ship(self.policy_adapter),
            ),
            f"round {k} instructions",
        )
        texts = [t for batch in texts for t in batch]
        outcomes = [screen(r.id, t, pool, self.heldout) for r, t in zip(reqs, texts, strict=True)]
        seen = {normalise(p.instruction) for p in sampled}
        new = []
        for o in outcomes:
            if o.prompt is not None and normalise(o.prompt.instruction) not in seen:
                seen.add(normalise(o.prompt.instruction))
                new.append(o.prompt)
        dropped = Counter(o.reason.split(" (")[0] for o in outcomes if o.prompt is None)

        prompts = sampled + new
        self.store.save_rows(self.store.dataset(k, "prompts"), [asdict(p) for p in prompts])
        return {
            "sampled": len(sampled),
            "requested": len(reqs),
            "new": len(new),
            "dropped": dict(dropped),
            "pool": len(pool),
            "summary": f"{len(sampled)} from the pool + {len(new)}/{len(reqs)} self-written",
        }

    def _generate(self, k: int) -> dict[str, Any]:
        g = self.cfg.generate
        prompts = [Prompt(**r) for r in self.store.load_rows(self.store.dataset(k, "prompts"))]
        per_chunk = max(1, BATCHES_PER_PIECE * g.batch_size // g.responses_per_prompt)
        started = time.perf_counter()
        parts = self._fan_out(
            self.actors.generators,
            spread(prompts, per_chunk, len(self.actors.generators)),
            lambda actor, piece, i: actor.respond.remote(
                piece,
                self.cfg.persona.system_prompt,
                g.responses_per_prompt,
                Sampling(g.max_new_tokens, g.temperature, g.top_p, g.batch_size),
                derive_seed(self.cfg.run.seed, k, "generate", i),
                self.ship(self.policy_adapter),
                k,
                g.trim_truncated,
            ),
            f"round {k} generate",
        )
        candidates = [c for part in parts for c in part]
        seconds = time.perf_counter() - started
        tokens = sum(c.tokens for c in candidates)
        self.store.save_rows(self.store.dataset(k, "generated"), [asdict(c) for c in candidates])
        return {
            "candidates": len(candidates),
            "tokens": tokens,
            "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
            "truncated": sum(not c.finished for c in candidates),
            "trimmed": sum(c.trimmed for c in candidates),
            "summary": f"{len(candidates)} candidates | {tokens / max(seconds, 1e-9):.0f} tokens/s",
        }

    def _critique(self, k: int) -> dict[str, Any]:
        rows = self.store.load_rows(self.store.dataset(k, "generated"))
        candidates = [Candidate(**r) for r in rows]
        critics = self.cfg.enabled_critics()

        # Per-candidate critics score shards in parallel, one shard per critic actor; a prompt's
        # samples stay in one shard, since the pairwise critic compares them with each other.
        parts = self._fan_out(
            self.actors.critics,
            prompt_shards(candidates, len(self.actors.critics)),
            lambda actor, piece, i: actor.score.remote(piece, self.ship(self.policy_adapter)),
            f"round {k} critique",
        )
        verdicts: dict[str, list[Verdict]] = {}
        for part in parts:
            for name, vs in part.items():
                verdicts.setdefault(name, []).extend(vs)

        # Near-duplicates are judged best first, against this round and earlier survivors.
        weights = {name: c.weight for name, c in critics.items()}
        combined = combined_scores(verdicts, weights, len(candidates))
        eligible = [all(v[i].passed for v in verdicts.values()) for i in range(len(candidates))]
        history = self._earlier_survivors(k)
        hist_vecs = np.asarray([r["embedding"] for r in history], dtype=np.float32)
        hist_vecs = hist_vecs if history else np.zeros((0, 0), dtype=np.float32)
        dedup, vectors = ray.get(
            self.actors.critics[0].dedup.remote(
                candidates, ranking(combined), eligible, hist_vecs, [r["id"] for r in history]
            )
        )
        dedup_name = next((n for n, c in critics.items() if isinstance(c, DedupCriticConfig)), None)
        if dedup_name is not None:
            verdicts[dedup_name] = dedup
        ordered = {name: verdicts[name] for name in critics if name in verdicts}
        # Balance: no group may take over the mentions in what the round keeps.
        bias = next((c for c in critics.values() if isinstance(c, BiasCriticConfig)), None)
        if bias is not None and bias.max_group_share < 1:
            passing = [all(v[i].passed for v in ordered.values()) for i in range(len(candidates))]
            ordered["balance"] = balance_verdicts(
                ranking(combined),
                [candidate_text(c) for c in candidates],
                passing,
                bias.max_group_share,
                bias.min_mentions,
                budget=self.cfg.select.budget,
                prior=[f"{r['instruction']}\n{r['response']}" for r in history],
            )

        # Over budget, keep a spread of the best rather than the best of one kind.
        sel = self.cfg.select
        decisions = decide(
            ordered, combined, sel.budget, sel.strategy, sel.diversity, vectors=vectors
        )
        record = self._save_critique(k, candidates, ordered, decisions, vectors)
        # Collapse shows here first: survivors less varied than candidates, or than last round.
        record["diversity"] = diversity_metrics(
            [candidate_text(c) for c in candidates],
            vectors,
            hist_vecs,
            [d.survivor for d in decisions],
        )
        return record

    def _save_critique(self, k, candidates, verdicts, decisions, vectors) -> dict[str, Any]:
        table, survivors = [], []
        for i, (c, d) in enumerate(zip(candidates, decisions, strict=True)):
            row = asdict(c)
            for name, vs in verdicts.items():
                row |= {
                    f"{name}_score": vs[i].score,
                    f"{name}_pass": vs[i].passed,
                    f"{name}_reason": vs[i].reason,
                }
            row |= {
                "combined_score": d.combined,
                "survivor": d.survivor,
                "rejected_by": d.rejected_by,
            }
            table.append(row)
            if d.survivor:
                survivors.append(
                    {
                        "id": c.id,
                        "prompt_id": c.prompt_id,
                        "source": c.source,
                        "instruction": c.instruction,
                        "response": c.response,
                        "prompt": [{"role": "user", "content": c.instruction}],
                        "completion": [{"role": "assistant", "content": c.response}],
                        "combined_score": d.combined,
                        "embedding": vectors[i].tolist(),
                    }
                )
        self.store.save_rows(self.store.dataset(k, "candidates"), table)
        self.store.save_rows(
            self.store.dataset(k, "survivors"),
            survivors,
            columns=(
                "id",
                "prompt_id",
                "source",
                "instruction",
                "response",
                "prompt",
                "completion",
                "combined_score",
                "embedding",
            ),
        )
        steps = funnel(decisions, list(verdicts))
        scores = {
            name: float(np.mean([v.score for v in vs])) if vs else 0.0
            for name, vs in verdicts.items()
        }
        keep = steps["survivors"] / max(len(candidates), 1)
        kinds = {name: c.kind for name, c in self.cfg.enabled_critics().items()}
        lengths = [len(words(c.response)) for c in candidates]
        # Model judges reward length when they can; the correlation shows whether this one does.
        length = {
            name: length_bias([v.score for v in vs], lengths)
            for name, vs in verdicts.items()
            if kinds.get(name) in ("judge", "pairwise", "contrast")
        }
        consistency = {
            name: float(np.mean(flags)) if flags else float("nan")
            for name, vs in verdicts.items()
            if kinds.get(name) == "pairwise"
            for flags in [[v.consistent for v in vs if v.consistent is not None]]
        }
        for name, removed in steps.items():
            if (
                name not in ("generated", "survivors")
                and len(candidates)
                and removed >= 0.9 * len(candidates)
            ):
                log.warning(
                    "round %d | critique | '%s' removed %d of %d candidates",
                    k,
                    name,
                    removed,
                    len(candidates),
                )
        return {
            "funnel": steps,
            "scores": scores,
            "length_bias": length,
            "position_consistency": consistency,
            "survivors": steps["survivors"],
            "keep_rate": keep,
            "summary": f"{steps['survivors']}/{len(candidates)} survive ({keep:.0%}) | "
            + " ".join(
                f"{n}:-{v}" for n, v in steps.items() if n not in ("generated", "survivors")
            ),
        }

    def _training_data(
        self, k: int, start_adapter: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """SFT examples and DPO pairs for round k. A fresh adapter learns from every accepted
        round's data as well, since it does not inherit what earlier adapters learnt."""
        t = self.cfg.train
        examples = self.store.load_rows(self.store.dataset(k, "survivors"))
        pairs: list[dict[str, Any]] = []
        unpaired: dict[str, int] = {}
        if t.method != "sft":
            # Preference pairs: per prompt, the best passing sample against the worst one.
            candidates = self.store.load_rows(self.store.dataset(k, "candidates"))
            pairs, unpaired = build_pairs(candidates, t.pair_margin)
            self.store.save_rows(self.store.dataset(k, "pairs"), pairs)
        if t.start == "fresh":
            for j in self.accepted_rounds(k):
                examples = self.store.load_rows(self.store.dataset(j, "survivors")) + examples
                if t.method != "sft" and self.store.dataset(j, "pairs").is_dir():
                    pairs = self.store.load_rows(self.store.dataset(j, "pairs")) + pairs
        info = {"pairs": len(pairs), "unpaired": unpaired, "sft_examples": len(examples)}
        return (examples if t.method != "dpo" else []), pairs, info

    def _train(self, k: int, start_adapter: str | None) -> dict[str, Any]:
        t = self.cfg.train
        examples, pairs, info = self._training_data(k, start_adapter)
        if t.real_share > 0 and examples:
            # Real examples next to the synthetic ones, in the share the config asks for; the
            # mix is its own dataset, so survivors stay what the critics kept.
            examples, info["mix"] = mix(
                examples, self.real_rows, t.real_share, derive_seed(self.cfg.run.seed, k, "mix")
            )
            self.store.save_rows(self.store.dataset(k, "train"), examples)
        # sft+dpo trains on its survivors even when no prompt made a pair
        missing = not examples if t.method != "dpo" else not pairs
        if missing:
            what = "survivors" if t.method != "dpo" else "preference pairs"
            return {
                "trained": False,
                **info,
                "reason": f"no {what} to train on",
                "summary": f"skipped: no {what}",
            }
        trainer = self.actors.trainer
        # The trainer reads train.start and train.reference to use the previous adapter as
        # the starting point, the DPO reference, both or neither.
        start = start_adapter if t.start == "previous" else None
        reference = start_adapter if t.reference == "previous" else None
        out = self.store.round_dir(k) / "adapter"
        future = trainer.train_to.remote(
            examples,
            t,
            Outbox(str(out.resolve()), node_id()),
            self.ship(start_adapter),
            derive_seed(self.cfg.run.seed, k, "train"),
            pairs,
        )
        with tqdm(
            desc=f"round {k} train", unit="step", disable=not self.progress, leave=False
        ) as bar:
            while not ray.wait([future], timeout=1.0)[0]:
                step, total = ray.get(trainer.progress.remote())
                bar.total = total or None
                bar.n = step
                bar.refresh()
        result, files = ray.get(future)
        if files is not None:  # saved on another node: its files came back by value
            unpack(files, out)
        return {
            "trained": True,
            **info,
            **asdict(result),  # its `trained` wins: a method with no rows trains nothing
            "adapter": None if result.adapter is None else "adapter",
            "models": self._models(k, start, reference),
            "examples_per_second": round(result.examples / max(result.seconds, 1e-9), 2),
            "summary": f"{t.method} | {result.examples} examples, {len(pairs)} pairs | "
            f"{result.steps} steps | loss {result.loss:.3f}"
            + (" | DIVERGED" if result.diverged else ""),
        }

    def _models(self, k: int, start: str | None, reference: str | None) -> dict[str, Any]:
        """Which model generated, judged, served as the DPO reference and seeded the adapter."""

        def name(adapter: str | None) -> str:
            return (
                "base"
                if adapter is None
                else f"base + {Path(adapter).relative_to(self.store.root)}"
            )

        policy = name(self.policy_adapter)
        judges = {
            critic: policy if getattr(c, "judge", "policy") == "policy" else c.judge
            for critic, c in self.cfg.enabled_critics().items()
            if hasattr(c, "judge")
        }
        return {
            "generated_by": policy,
            "judged_by": judges,
            "reference": name(reference) if self.cfg.train.method != "sft" else None,
            "started_from": name(start) if start else "a fresh adapter on the base",
        }

    # ---- evaluation ----------------------------------------------------------------------

    TARGET_COLUMNS = {"persona": "adherent", "quality": "quality", "accuracy": "correct"}

    def _answer_rows(
        self, arm: str, adapter: str | None, system_prompt: str | None, desc: str
    ) -> list[dict[str, Any]]:
        """One arm's greedy answers to the held-out prompts, scored prompt by prompt."""
        e = self.cfg.eval
        gens = self.actors.generators
        parts = self._fan_out(
            gens,
            spread(self.heldout, len(self.heldout), len(gens)),
            lambda actor, piece, i: actor.answer.remote(
                piece,
                Sampling(e.max_new_tokens, batch_size=self.cfg.generate.batch_size),
                self.ship(adapter),
                system_prompt,
            ),
            desc,
        )
        answers = [a for part in parts for a in part]
        # Quality comes from the fixed base judge, whichever arm answered.
        quality = ray.get(
            self.actors.critics[0].rate.remote(
                e.quality_question,
                [(p.instruction, a.text) for p, a in zip(self.heldout, answers, strict=True)],
                None,
            )
        )
        rows = []
        for p, a, q in zip(self.heldout, answers, quality, strict=True):
            rows.append(
                {
                    "id": p.id,
                    "instruction": p.instruction,
                    "arm": arm,
                    "response": a.text,
                    "tokens": a.tokens,
                    "finished": a.finished,
                    "prompt_tokens": a.prompt_tokens,
                    "seconds": a.seconds,
                    **asdict(persona_score(a.text, self.markers)),
                    "quality": q,
                    "correct": self._correct(p, a.text),
                }
            )
        return rows

    def _correct(self, prompt: Prompt, text: str) -> float | None:
        """1.0 or 0.0 for a held-out prompt with a reference answer; None without one."""
        if not prompt.reference:
            return None
        return float(check(text, prompt.reference, self.cfg.eval.checker)[0])

    def _arm_figures(
        self, rows: list[dict[str, Any]], adapter: str | None, system_prompt: str | None
    ) -> dict[str, Any]:
        """Answer figures plus what the critic actor measures on the arm's weights: retention
        (general-text perplexity, multiple-choice accuracy) and bias (CrowS-Pairs)."""
        audit = ray.get(self.actors.critics[0].audit.remote(self.ship(adapter), system_prompt))
        return summarize(rows) | audit

    def reference_arm(self, arm: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The base model's answers without and with the system prompt: the same every round,
        so computed once per run and kept in arms/<arm>/."""
        folder, summary = self.store.root / "arms" / arm, self.store.root / "arms" / f"{arm}.json"
        if not summary.is_file():
            system = self.cfg.persona.system_prompt if arm == "prompt" else None
            rows = self._answer_rows(arm, None, system, f"{arm} arm eval")
            self.store.save_rows(folder, rows)
            write_json(summary, self._arm_figures(rows, None, system))
        return self.store.load_rows(folder), read_json(summary)

    def _pairwise(self, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict:
        """The base judge's preference for our answer over theirs, asked in both orders."""
        triples = [
            (a["instruction"], a["response"], b["response"])
            for a, b in zip(ours, theirs, strict=True)
        ]
        results = ray.get(
            self.actors.critics[0].compare.remote(self.cfg.eval.pairwise_question, triples, None)
        )
        return {
            "win": estimate([r.win for r in results]),
            "consistency": estimate([float(r.consistent) for r in results]),
        }

    def _evaluate(self, k: int, train: dict[str, Any]) -> dict[str, Any]:
        arms = {arm: self.reference_arm(arm) for arm in ("base", "prompt")}
        figures: dict[str, Any] = {arm: fig for arm, (_, fig) in arms.items()}
        if not train.get("trained") or train.get("adapter") is None:
            return {"evaluated": False, "eval": figures, "summary": "skipped: no new adapter"}

        # The adapter answers without the system prompt: the voice must be in the weights.
        adapter = str(self.store.round_dir(k) / "adapter")
        rows = self._answer_rows("adapter", adapter, None, f"round {k} eval")
        figures["adapter"] = self._arm_figures(rows, adapter, None)
        self.store.save_rows(
            self.store.dataset(k, "eval"),
            [r for arm_rows, _ in arms.values() for r in arm_rows] + rows,
        )
        # Did it gain? Paired over prompts against each arm, and as the judge sees it.
        column = self.TARGET_COLUMNS[self.cfg.eval.target]
        figures["gain"] = {
            f"vs_{arm}": paired_gain(rows, arm_rows, column) for arm, (arm_rows, _) in arms.items()
        }
        figures["pairwise"] = {
            f"vs_{arm}": self._pairwise(rows, arm_rows) for arm, (arm_rows, _) in arms.items()
        }
        figures["change"] = retention_change(figures["base"], figures["adapter"])
        # What changed inside the model: update norms, drift from the base, changed answers.
        changes = ray.get(
            self.actors.critics[0].explain.remote(self.ship(adapter), self.cfg.eval.max_new_tokens)
        )
        t = self.cfg.eval.target
        return {
            "evaluated": True,
            "eval": figures,
            "changes": changes,
            "summary": " | ".join(
                f"{t} {arm} {figures[arm][t]['mean']:.3f}" for arm in ("base", "prompt", "adapter")
            )
            + f" | win vs base {figures['pairwise']['vs_base']['win']['mean']:.2f}",
        }

    def best_target(self, before: int) -> float:
        t = self.cfg.eval.target
        best = self.reference_arm("base")[1][t]["mean"]
        for j in self.accepted_rounds(before):
            best = max(best, self.store.metrics(j)["eval"]["adapter"][t]["mean"])
        return best

    # ---- commit --------------------------------------------------------------------------

    def _gate(self, k: int, records: dict[str, dict[str, Any]]) -> tuple[str, str]:
        train, figures = records["train"], records["evaluate"]["eval"]
        best = self.best_target(k) if train.get("trained") else 0.0
        return gate.decide(self.cfg.gate, self.cfg.eval.target, train, figures, best)

    def _commit(
        self, k: int, adapter: str | None, records: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        self.stopper.check()
        status, reason = self._gate(k, records)
        crit = records["critique"]
        metrics = {
            "round": k,
            "status": status,
            "reason": reason,
            "started_from": None
            if adapter is None
            else str(Path(adapter).relative_to(self.store.root)),
            "adapter": f"round_{k:03d}/adapter" if records["train"].get("adapter") else None,
            "candidates": crit["funnel"]["generated"],
            "survivors": crit["survivors"],
            "keep_rate": crit["keep_rate"],
            "funnel": with_unparseable(crit["funnel"], records["prompts"]["dropped"]),
            "rejected_by": {
                n: v for n, v in crit["funnel"].items() if n not in ("generated", "survivors")
            },
            "scores": crit["scores"],
            "length_bias": crit.get("length_bias"),
            "diversity": crit.get("diversity"),
            "position_consistency": crit.get("position_consistency"),
            "prompts": {
                x: records["prompts"][x] for x in ("sampled", "new", "requested", "dropped")
            },
            "generate": {
                x: records["generate"][x]
                for x in ("candidates", "tokens", "tokens_per_second", "truncated", "trimmed")
            },
            "train": {
                x: records["train"].get(x)
                for x in (
                    "method",
                    "examples",
                    "pairs",
                    "unpaired",
                    "steps",
                    "loss",
                    "diverged",
                    "examples_per_second",
                    "checks",
                    "dpo",
                    "mix",
                    "strategy",
                    "trainable_params",
                    "peak_rss_bytes",
                    "fit_seconds",
                    "saved_bytes",
                )
            },
            "models": records["train"].get("models"),
            "eval": without_items(records["evaluate"]["eval"]),
            "changes": records["evaluate"].get("changes"),
            "seconds": {s: records[s]["seconds"] for s in STAGES},
        }
        self.store.commit_round(
            k,
            metrics,
            {"round": k, "status": status, "completed": time.strftime("%Y-%m-%dT%H:%M:%S")},
        )
        return metrics
