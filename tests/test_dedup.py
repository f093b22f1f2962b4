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


def one_at_a_time(
    ids: list[str],
    vectors: np.ndarray,
    order: list[int],
    eligible: list[bool],
    history: np.ndarray,
    history_ids: list[str],
    threshold: float,
) -> list[tuple[bool, str | None, float]]:
    """The plain algorithm: each candidate, best first, against everything kept before it.
    Returns (passed, nearest id, cosine) per candidate."""
    kept, kept_ids = list(history), list(history_ids)
    out: dict[int, tuple[bool, str | None, float]] = {}
    for i in order:
        sims = np.asarray(kept) @ vectors[i] if kept else np.zeros(0)
        best = int(np.argmax(sims)) if len(sims) else -1  # argmax: the first of equals
        sim = float(sims[best]) if best >= 0 else -1.0
        out[i] = (sim < threshold, kept_ids[best] if best >= 0 else None, sim)
        if eligible[i] and sim < threshold:
            kept.append(vectors[i])
            kept_ids.append(ids[i])
    return [out[i] for i in range(len(ids))]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def planted(n: int, m: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n candidates and m history vectors; about a third of the candidates are noisy copies of
    a history vector or of another candidate, at cosines spread around 0.9."""
    rng = np.random.default_rng(seed)
    history = unit(rng.standard_normal((m, dim)))
    vectors = rng.standard_normal((n, dim))
    for i in range(n):
        if rng.random() < 0.33:
            source = history[rng.integers(m)] if rng.random() < 0.3 else vectors[rng.integers(n)]
            noise = rng.standard_normal(dim) * rng.uniform(0.0, 0.08)
            vectors[i] = source / np.linalg.norm(source) + noise
    return unit(vectors), history


def parse(verdict) -> tuple[bool, str | None, float | None]:
    found = re.fullmatch(
        r"(?:near-duplicate of|nearest is) (.+) \(cosine (-?[\d.]+)\)", verdict.reason
    )
    if found is None:
        return verdict.passed, None, None
    return verdict.passed, found.group(1), float(found.group(2))


@pytest.mark.parametrize("block_size", [1, 2, 7, 64, 1000])
@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_blocks_give_the_one_at_a_time_verdicts(block_size: int, index: str) -> None:
    n, m, dim = 400, 30, 16
    vectors, history = planted(n, m, dim, seed=block_size)
    rng = np.random.default_rng(100 + block_size)
    order = [int(i) for i in rng.permutation(n)]
    eligible = [bool(e) for e in rng.random(n) < 0.8]
    ids = [f"c{i}" for i in range(n)]
    history_ids = [f"h{i}" for i in range(m)]
    candidates = [cand(i, "q", "a") for i in ids]

    critic = DedupCritic("dedup", threshold=0.9, index=index, block_size=block_size)
    verdicts = critic.judge(candidates, vectors, order, eligible, history, history_ids)
    expected = one_at_a_time(ids, vectors, order, eligible, history, history_ids, 0.9)

    # both branches run: in-block, cross-block and history duplicates
    assert 60 < sum(not p for p, _, _ in expected) < 200
    for verdict, (passed, nearest, sim) in zip(verdicts, expected, strict=True):
        got_passed, got_nearest, got_sim = parse(verdict)
        assert (got_passed, got_nearest) == (passed, nearest)
        assert verdict.score == pytest.approx(1.0 - max(sim, 0.0), abs=1e-5)
        if nearest is not None:
            assert got_sim == pytest.approx(sim, abs=0.0051)  # printed to two places


def test_hnsw_and_flat_agree_on_copies(embedder: Embedder) -> None:
    candidates = [PLANETS, EGG_PARAPHRASE, EGG_COPY, EGG]
    vectors = embedder.embed([candidate_text(c) for c in candidates])

    flat = DedupCritic("dedup", 0.9, index="flat").judge(
        candidates, vectors, [3, 0, 1, 2], [True] * 4, *no_history(384)
    )
    hnsw = DedupCritic("dedup", 0.9, index="hnsw").judge(
        candidates, vectors, [3, 0, 1, 2], [True] * 4, *no_history(384)
    )

    assert hnsw == flat


def test_bad_index_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'flat' or 'hnsw'"):
        DedupCritic("dedup", 0.9, index="ivf")  # type: ignore[arg-type]
