"""Diversity figures on hand-built texts and vectors with hand-computed answers."""

import math

import numpy as np
import pytest

from critics.diversity import (
    cluster_labels,
    distinct_n,
    diversity_metrics,
    mean_distance,
    novelty,
)

E = np.eye(4, dtype=np.float32)


def test_distinct_n_counts_lower_cased_words_within_each_text() -> None:
    texts = ["The cat sat.", "the CAT ran"]

    # unigrams: the cat sat the cat ran -> 4 unique of 6
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: the-cat cat-sat the-cat cat-ran -> 3 unique of 4
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["a a a a"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    # no bigram b-c across the two texts
    assert distinct_n(["a b", "c d"], 2) == 1.0


def test_distinct_n_without_ngrams_is_nan() -> None:
    assert math.isnan(distinct_n(["one", "two"], 2))
    assert math.isnan(distinct_n([], 1))


def test_mean_distance_known_sets() -> None:
    assert mean_distance(np.stack([E[0]] * 5)) == pytest.approx(0.0, abs=1e-12)
    assert mean_distance(E) == pytest.approx(1.0)
    # pairs (e0, e0) 0, (e0, e1) 1, (e0, e1) 1
    assert mean_distance(np.stack([E[0], E[0], E[1]])) == pytest.approx(2 / 3)
    assert math.isnan(mean_distance(E[:1]))


def test_mean_distance_equals_the_pairwise_mean() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((30, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pairs = [1 - v[i] @ v[j] for i in range(30) for j in range(i + 1, 30)]

    assert mean_distance(v) == pytest.approx(np.mean(pairs))


def test_novelty_known_sets() -> None:
    history = E[:2]

    assert novelty(E[:2], history) == pytest.approx(0.0, abs=1e-6)  # exact repeats
    assert novelty(E[2:], history) == pytest.approx(1.0)  # orthogonal to all history
    assert novelty(E[1:3], history) == pytest.approx(0.5)  # one repeat, one new
    assert math.isnan(novelty(E, np.zeros((0, 0), dtype=np.float32)))


def groups() -> tuple[np.ndarray, list[str]]:
    """Three tight groups of four around e0, e1 and e2."""
    rng = np.random.default_rng(1)
    v = np.repeat(E[:3], 4, axis=0) + 0.01 * rng.standard_normal((12, 4)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    texts = [f"answer number {i}" for i in range(12)]
    return v, texts


def test_clusters_find_the_groups_and_repeat_for_a_seed() -> None:
    v, _ = groups()
    labels = cluster_labels(v, 3, seed=0)

    assert [len(set(labels[g * 4 : g * 4 + 4])) for g in range(3)] == [1, 1, 1]
    assert len(set(labels.tolist())) == 3
    assert np.array_equal(labels, cluster_labels(v, 3, seed=0))
    assert len(set(cluster_labels(v[:2], 8, seed=0).tolist())) <= 2  # k = min(8, 2)


def test_survivors_from_one_group_show_the_collapse() -> None:
    v, texts = groups()
    survivors = [i < 4 for i in range(12)]  # only the e0 group

    m = diversity_metrics(texts, v, E[:1], survivors, clusters=3, seed=0)

    assert m["clusters/k"] == 3
    assert (m["candidates/clusters_touched"], m["survivors/clusters_touched"]) == (3, 1)
    assert m["survivors/cluster_coverage"] == pytest.approx(1 / 3)
    assert m["candidates/size"] == 12 and m["survivors/size"] == 4
    assert m["survivors/mean_distance"] < 0.01 < 0.5 < m["candidates/mean_distance"]
    # the survivors repeat history (e0); two thirds of the candidates are new (the 0.01 noise
    # moves each cosine by about 0.01)
    assert m["survivors/novelty"] == pytest.approx(0.0, abs=0.02)
    assert m["candidates/novelty"] == pytest.approx(2 / 3, abs=0.02)
    # words: "answer" "number" then the digit; 14 unique of 36 and 4 + 2 of 12
    assert m["candidates/distinct_1"] == pytest.approx(14 / 36)
    assert m["survivors/distinct_1"] == pytest.approx(6 / 12)


def test_no_history_and_no_survivors_are_nan_not_errors() -> None:
    v, texts = groups()

    m = diversity_metrics(texts, v, np.zeros((0, 0), dtype=np.float32), [False] * 12)

    assert math.isnan(m["candidates/novelty"]) and math.isnan(m["survivors/distinct_2"])
    assert m["survivors/clusters_touched"] == 0 and m["clusters/k"] == 8


def test_mismatched_lengths_say_what_is_wrong() -> None:
    v, texts = groups()

    with pytest.raises(ValueError, match="one vector and one survivor flag per text"):
        diversity_metrics(texts, v[:3], v, [True] * 12)
