"""Semantic near-duplicate removal against this round and every earlier round's survivors.

Candidates are visited best first, so of two near-duplicates the better one survives. Embeddings
are normalised, so inner product is cosine similarity; the index is a flat faiss index.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    def __init__(self, name: str, threshold: float) -> None:
        self.name = name
        self.threshold = threshold

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
        index = faiss.IndexFlatIP(dim)
        ids = list(history_ids)
        if len(history):
            index.add(np.ascontiguousarray(history, dtype=np.float32))
        verdicts: dict[int, Verdict] = {}
        for i in order:
            vec = vectors[i : i + 1]
            sim, nearest = (-1.0, None)
            if index.ntotal:
                d, k = index.search(vec, 1)
                sim, nearest = float(d[0, 0]), ids[int(k[0, 0])]
            duplicate = sim >= self.threshold
            if nearest is None:
                reason = "nothing similar yet"
            elif duplicate:
                reason = f"near-duplicate of {nearest} (cosine {sim:.2f})"
            else:
                reason = f"nearest is {nearest} (cosine {sim:.2f})"
            verdicts[i] = Verdict(max(0.0, 1.0 - max(sim, 0.0)), not duplicate, reason)
            if eligible[i] and not duplicate:
                index.add(vec)
                ids.append(candidates[i].id)
        return [verdicts[i] for i in range(len(candidates))]
