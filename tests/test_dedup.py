"""Near-duplicate removal with the real MiniLM embedder: best first, eligible only, and history."""

import re

import numpy as np
import pytest

from critics.base import Candidate
from critics.dedup import DedupCritic, Embedder, candidate_text


def cand(cid: str, instruction: str, response: str) -> Candidate:
    return Candidate(cid, "p", "seed", instruction, response, tokens=20, finished=True)


EGG = cand(
    "egg",
    "How do I boil an egg?",
    "Put the egg in boiling water for nine minutes, then cool it in cold water.",
)
EGG_COPY = cand("egg-copy", EGG.instruction, EGG.response)
EGG_PARAPHRASE = cand(
    "egg-paraphrase",
    "How can I boil an egg?",
    "Place the egg in boiling water for nine minutes, then cool it under cold water.",
)
PLANETS = cand(
    "planets", "Name three planets.", "Mars, Venus and Jupiter are planets in our solar system."
)


@pytest.fixture(scope="module")
def embedder(embedder_dir: str) -> Embedder:
    return Embedder(embedder_dir)


def no_history(dim: int) -> tuple[np.ndarray, list[str]]:
    return np.zeros((0, dim), dtype=np.float32), []


def test_embeddings_are_normalised(embedder: Embedder) -> None:
    vectors = embedder.embed([candidate_text(EGG), candidate_text(PLANETS)])

    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), [1.0, 1.0], atol=1e-5)


def test_copies_of_a_better_candidate_are_rejected_naming_it(embedder: Embedder) -> None:
    candidates = [PLANETS, EGG_PARAPHRASE, EGG_COPY, EGG]
    vectors = embedder.embed([candidate_text(c) for c in candidates])
    critic = DedupCritic("dedup", threshold=0.9)

    # EGG ranks best, so its copy and paraphrase are the ones dropped
    verdicts = critic.judge(candidates, vectors, [3, 0, 1, 2], [True] * 4, *no_history(384))

    assert [v.passed for v in verdicts] == [True, False, False, True]
    assert verdicts[3].reason == "nothing similar yet"
    assert verdicts[3].score == 1.0
    assert re.fullmatch(r"nearest is egg \(cosine -?0\.[0-4]\d\)", verdicts[0].reason)
    assert re.fullmatch(r"near-duplicate of egg \(cosine 0\.9\d\)", verdicts[1].reason)
    assert verdicts[2].reason == "near-duplicate of egg (cosine 1.00)"
    assert verdicts[2].score == pytest.approx(0.0, abs=1e-5)  # 1 - cosine


def test_rank_order_decides_which_copy_survives(embedder: Embedder) -> None:
    candidates = [EGG, EGG_COPY]
    vectors = embedder.embed([candidate_text(c) for c in candidates])
    critic = DedupCritic("dedup", threshold=0.9)

    verdicts = critic.judge(candidates, vectors, [1, 0], [True, True], *no_history(384))

    assert [v.passed for v in verdicts] == [False, True]
    assert verdicts[0].reason == "near-duplicate of egg-copy (cosine 1.00)"


def test_an_ineligible_candidate_does_not_shadow_its_duplicate(embedder: Embedder) -> None:
    candidates = [EGG, EGG_COPY, PLANETS]
    vectors = embedder.embed([candidate_text(c) for c in candidates])
    critic = DedupCritic("dedup", threshold=0.9)

    # EGG ranks first but failed an earlier critic: it never enters the index
    verdicts = critic.judge(candidates, vectors, [0, 1, 2], [False, True, True], *no_history(384))

    assert [v.passed for v in verdicts] == [True, True, True]
    assert verdicts[1].reason == "nothing similar yet"
    assert verdicts[2].reason.startswith("nearest is egg-copy ")


def test_a_duplicate_of_an_earlier_round_is_rejected(embedder: Embedder) -> None:
    history = embedder.embed([candidate_text(EGG)])
    candidates = [PLANETS, EGG_PARAPHRASE]
    vectors = embedder.embed([candidate_text(c) for c in candidates])
    critic = DedupCritic("dedup", threshold=0.9)

    verdicts = critic.judge(candidates, vectors, [0, 1], [True, True], history, ["r1:seed-004:s0"])

    assert [v.passed for v in verdicts] == [True, False]
    assert verdicts[0].reason.startswith("nearest is r1:seed-004:s0 ")
    assert re.fullmatch(r"near-duplicate of r1:seed-004:s0 \(cosine 0\.9\d\)", verdicts[1].reason)


def test_threshold_is_inclusive() -> None:
    # Hand-made unit vectors: cosine of a and b is exactly 0.5 (0.5 and 0.75 are exact in binary).
    a = np.array([[1.0, 0.0]], dtype=np.float32)
    b = np.array([[0.5, 0.75**0.5]], dtype=np.float32)
    vectors = np.concatenate([a, b])
    candidates = [EGG, PLANETS]

    at = DedupCritic("dedup", threshold=0.5).judge(
        candidates, vectors, [0, 1], [True, True], *no_history(2)
    )
    above = DedupCritic("dedup", threshold=0.51).judge(
        candidates, vectors, [0, 1], [True, True], *no_history(2)
    )

    assert at[1].passed is False
    assert at[1].reason == "near-duplicate of egg (cosine 0.50)"
    assert at[1].score == pytest.approx(0.5)
    assert above[1].passed is True
    assert above[1].reason == "nearest is egg (cosine 0.50)"


def test_no_candidates() -> None:
    empty = np.zeros((0, 384), dtype=np.float32)

    assert DedupCritic("dedup", 0.9).judge([], empty, [], [], *no_history(384)) == []
