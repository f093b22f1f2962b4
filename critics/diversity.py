"""How varied a round's data is: lexical, semantic, cluster spread and novelty against history.

The same figures are computed for the round's candidates and for its survivors, so a collapse
shows both within a round (survivors much less varied than candidates) and round over round.
Embeddings are assumed L2-normalised, so inner product is cosine similarity.

- distinct_n: unique word n-grams / all word n-grams over the set. Words are runs of letters,
  digits and underscores in the lower-cased text; n-grams never cross two texts.
- mean_distance: mean of 1 - cosine over all unordered pairs.
- clusters: k-means (faiss, fixed seed) with k = min(clusters, candidates) on the candidates'
  embeddings; `touched` counts the clusters a set has a member in, `coverage` is touched / k.
- novelty: mean over the set of 1 - (max cosine to any history vector); nan without history.

A figure that needs more members than the set has (no text, fewer than two vectors) is nan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import faiss
import numpy as np

WORD = re.compile(r"\w+")


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [
        tuple(words[i : i + n])
        for words in (WORD.findall(t.lower()) for t in texts)
        for i in range(len(words) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else math.nan


def mean_distance(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of (n, dim) unit vectors, in O(n * dim): the sum of all
    pairwise inner products is |sum of vectors|^2 minus the self-products."""
    n = len(vectors)
    if n < 2:
        return math.nan
    v = np.asarray(vectors, dtype=np.float64)
    total = v.sum(axis=0)
    pair_sum = (total @ total - np.einsum("ij,ij->", v, v)) / 2
    return float(1.0 - pair_sum / (n * (n - 1) / 2))


def novelty(vectors: np.ndarray, history: np.ndarray) -> float:
    """Mean of 1 - max cosine to history over (n, dim) vectors; nan without history or vectors."""
    if len(vectors) == 0 or len(history) == 0:
        return math.nan
    index = faiss.IndexFlatIP(history.shape[1])
    index.add(np.ascontiguousarray(history, dtype=np.float32))
    nearest, _ = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return float(np.mean(1.0 - nearest[:, 0].astype(np.float64)))


def cluster_labels(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """(n,) k-means cluster of each vector, k = min(clusters, n); deterministic for a seed."""
    n = len(vectors)
    k = min(clusters, n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    # min_points_per_centroid=1: small rounds are expected, not worth faiss's warning.
    kmeans = faiss.Kmeans(data.shape[1], k, niter=20, seed=seed, min_points_per_centroid=1)
    kmeans.train(data)
    _, labels = kmeans.index.search(data, 1)
    return labels[:, 0].astype(np.int64)


def set_metrics(texts: Sequence[str], vectors: np.ndarray, history: np.ndarray) -> dict[str, float]:
    return {
        "size": len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "mean_distance": mean_distance(vectors),
        "novelty": novelty(vectors, history),
    }


def diversity_metrics(
    texts: Sequence[str],  # one per candidate
    vectors: np.ndarray,  # (n, dim) the candidates' normalised embeddings
    history_vectors: np.ndarray,  # (m, dim) earlier rounds' survivors; m may be 0
    survivors: Sequence[bool],  # (n,) which candidates survived selection
    clusters: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """Flat metrics, keys `candidates/<figure>` and `survivors/<figure>` plus `clusters/k` and
    `<set>/clusters_touched` and `<set>/cluster_coverage`."""
    n = len(texts)
    if len(vectors) != n or len(survivors) != n:
        raise ValueError(
            f"diversity_metrics needs one vector and one survivor flag per text ({n} texts), "
            f"got {len(vectors)} vectors and {len(survivors)} flags"
        )
    mask = np.asarray(survivors, dtype=bool).reshape(n)
    vectors = np.asarray(vectors, dtype=np.float32).reshape(n, -1)
    labels = cluster_labels(vectors, clusters, seed)
    k = int(min(clusters, n))
    out: dict[str, float] = {"clusters/k": k}
    for name, chosen in (("candidates", np.ones(n, dtype=bool)), ("survivors", mask)):
        picked = [t for t, keep in zip(texts, chosen, strict=True) if keep]
        for key, value in set_metrics(picked, vectors[chosen], history_vectors).items():
            out[f"{name}/{key}"] = value
        touched = len(set(labels[chosen].tolist()))
        out[f"{name}/clusters_touched"] = touched
        out[f"{name}/cluster_coverage"] = touched / k if k else math.nan
    return out
