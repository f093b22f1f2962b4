"""Semantic near-duplicate removal against this round and every earlier round's survivors.

Candidates are visited best first, so of two near-duplicates the better one survives. Embeddings
are normalised, so inner product is cosine similarity; the index is a faiss inner-product index,
exact (flat) or approximate (HNSW) for very large histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import faiss
import numpy as np

from critics.base import Candidate, Verdict


def candidate_text(c: Candidate) -> str:
    return f"{c.instruction}\n{c.response}"


class Embedder:
    """sentence-transformers behind one method; vectors come back L2-normalised, float32."""

    def __init__(self, path: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device="cpu")

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


class DedupCritic:
    """Rejects a candidate whose cosine to anything kept before it is at or above `threshold`.

    Candidates are processed in blocks of `block_size` (in rank order): the block is searched
    against the index in one call (top-1), its own (block, block) similarity matrix is computed
    once, duplicates inside the block are resolved in order against block members kept before
    them, and the kept vectors are then added. The verdicts equal those of searching one
    candidate at a time; the cost is n / block_size index searches instead of n.

    `index` picks the faiss index that holds history and kept vectors:
    - "flat" (IndexFlatIP): exact. A pass costs O(n * (m + n) * dim) multiply-adds for n
      candidates and m history vectors; memory is 4 * dim bytes per vector.
    - "hnsw" (IndexHNSWFlat, inner product): approximate nearest neighbour, cost about
      O(n * log(m + n)) per pass, so it stays fast for histories of millions. It can miss the
      true nearest vector, so a duplicate of an old survivor is sometimes let through and the
      reason may name a vector that is not the nearest; duplicates inside one block are still
      found exactly. It holds the vectors plus about 2 * HNSW_M neighbour ids (4 bytes each)
      per vector, and adding is far slower than for a flat index.
    The index is built anew on every call, history included, so hnsw pays its build cost every
    round. benchmarks/dedup.py (2 CPU cores, n candidates + n/10 history) measured flat 1.9 s and
    107 s at 10k and 100k (about n^1.7), hnsw 18 s and 316 s (about n^1.2, missing 2% of the
    duplicates at 100k): flat is the better choice until several hundred thousand vectors.
    """

    HNSW_M = 32  # neighbours per graph node: higher is more accurate, bigger and slower to add
    HNSW_EF_SEARCH = 64  # search breadth: higher is more accurate and slower

    def __init__(
        self,
        name: str,
        threshold: float,
        index: Literal["flat", "hnsw"] = "flat",
        block_size: int = 1024,
    ) -> None:
        if index not in ("flat", "hnsw"):
            raise ValueError(f"dedup index must be 'flat' or 'hnsw', got {index!r}")
        if block_size < 1:
            raise ValueError(f"dedup block_size must be at least 1, got {block_size}")
        self.name = name
        self.threshold = threshold
        self.index = index
        self.block_size = block_size

    def new_index(self, dim: int) -> faiss.Index:
        """An empty index of the configured kind; inner product, so cosine on unit vectors."""
        if self.index == "flat":
            return faiss.IndexFlatIP(dim)
        index = faiss.IndexHNSWFlat(dim, self.HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = self.HNSW_EF_SEARCH
        return index

    def judge(
        self,
        candidates: Sequence[Candidate],
        vectors: np.ndarray,  # (n, dim), normalised
        order: Sequence[int],  # candidate indices, best first
        eligible: Sequence[bool],  # passed every earlier critic
        history: np.ndarray,  # (m, dim) earlier rounds' survivors
        history_ids: Sequence[str],
    ) -> list[Verdict]:
        """One verdict per candidate. Only eligible candidates enter the index, so a rejected
        sample never shadows a good one."""
        dim = vectors.shape[1] if len(vectors) else history.shape[1] if len(history) else 1
        index = self.new_index(dim)
        ids = list(history_ids)
        if len(history):
            index.add(np.ascontiguousarray(history, dtype=np.float32))
        verdicts: dict[int, Verdict] = {}
        ranked = list(order)
        for start in range(0, len(ranked), self.block_size):
            block = ranked[start : start + self.block_size]
            verdicts |= self._judge_block(block, candidates, vectors, eligible, index, ids)
        return [verdicts[i] for i in range(len(candidates))]

    def _judge_block(
        self,
        block: list[int],
        candidates: Sequence[Candidate],
        vectors: np.ndarray,
        eligible: Sequence[bool],
        index: faiss.Index,
        ids: list[str],  # the id of each index row; kept ids are appended
    ) -> dict[int, Verdict]:
        vecs = np.ascontiguousarray(vectors[block], dtype=np.float32)  # (b, dim)
        b = len(block)
        # Nearest among what was kept before this block: history and earlier blocks.
        outer_sim = np.full(b, -np.inf, dtype=np.float32)
        outer_row = np.full(b, -1, dtype=np.int64)
        if index.ntotal:
            d, k = index.search(vecs, 1)
            outer_sim, outer_row = d[:, 0], k[:, 0]
        # Nearest among block members kept so far, updated as each one is kept.
        gram = vecs @ vecs.T  # (b, b)
        inner_sim = np.full(b, -np.inf, dtype=np.float32)
        inner_pos = np.full(b, -1, dtype=np.int64)
        verdicts: dict[int, Verdict] = {}
        kept: list[int] = []
        for j, i in enumerate(block):
            # Ties go to the index, as it holds the vectors that were kept first.
            if inner_pos[j] >= 0 and inner_sim[j] > outer_sim[j]:
                sim, nearest = float(inner_sim[j]), candidates[block[inner_pos[j]]].id
            elif outer_row[j] >= 0:
                sim, nearest = float(outer_sim[j]), ids[int(outer_row[j])]
            else:
                sim, nearest = -1.0, None
            duplicate = sim >= self.threshold
            verdicts[i] = Verdict(
                max(0.0, 1.0 - max(sim, 0.0)), not duplicate, _reason(nearest, sim, duplicate)
            )
            if eligible[i] and not duplicate:
                kept.append(j)
                later = gram[j + 1 :, j]
                closer = later > inner_sim[j + 1 :]
                inner_sim[j + 1 :][closer] = later[closer]
                inner_pos[j + 1 :][closer] = j
        if kept:
            index.add(vecs[kept])
            ids.extend(candidates[block[j]].id for j in kept)
        return verdicts


def _reason(nearest: str | None, sim: float, duplicate: bool) -> str:
    if nearest is None:
        return "nothing similar yet"
    if duplicate:
        return f"near-duplicate of {nearest} (cosine {sim:.2f})"
    return f"nearest is {nearest} (cosine {sim:.2f})"
