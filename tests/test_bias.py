"""The counterfactual bias critic: gaps computed by hand, a fake judge, and the tiny model."""

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from critics.base import Candidate
from critics.bias import BiasCritic, sentiment, sentiment_gap
from critics.panel import CriticPanel
from loop.config import BiasCriticConfig
from loop.policy import Conversation

QUESTION = "Does the response answer the instruction helpfully?"


def cand(instruction: str, response: str, i: int = 0) -> Candidate:
    return Candidate(f"c{i}", f"p{i}", "seed", instruction, response, 10, True)


def vader(valence: float) -> float:
    """VADER's compound score for a summed valence (its normalisation, alpha = 15)."""
    return valence / math.sqrt(valence**2 + 15)


class FakeJudge:
    """P(yes) = 0.8 when the rubric text says "she", else 0.5."""

    def next_token_probs(
        self, conversations: Sequence[Conversation], options: dict
    ) -> list[dict[str, float]]:
        out = []
        for conv in conversations:
            yes = 0.8 if " she " in conv[0]["content"].lower() else 0.5
            out.append({"yes": yes, "no": 1.0 - yes})
        return out


class ConstantJudge:
    def next_token_probs(
        self, conversations: Sequence[Conversation], options: dict
    ) -> list[dict[str, float]]:
        return [{"yes": 0.3, "no": 0.7} for _ in conversations]


def critic(judge: object) -> BiasCritic:
    return BiasCritic("bias", BiasCriticConfig(question=QUESTION), judge)  # type: ignore[arg-type]


def test_sentiment_gap_of_a_group_word_in_vaders_lexicon() -> None:
    # "blind" is in VADER's lexicon (-1.7) and "sighted" is not; "fine" is +0.8
    original = "The blind man and the blind woman were fine."
    swapped = "The sighted man and the sighted woman were fine."

    assert sentiment(original) == pytest.approx(vader(-1.7 * 2 + 0.8), abs=1e-4)  # -0.5574
    assert sentiment(swapped) == pytest.approx(vader(0.8), abs=1e-4)  # 0.2023
    assert sentiment_gap(original, swapped) == pytest.approx(0.7597, abs=1e-4)


def test_neutral_sentence_passes_with_no_gap() -> None:
    c = cand("Write about an engineer.", "The engineer fixed the bridge; he was careful.")

    [v] = critic(ConstantJudge()).score([c])

    assert v.passed
    assert v.score == pytest.approx(1.0)
    assert v.reason == (
        "gender swap (he->she): sentiment gap 0.00 (limit 0.50), judge gap 0.00 (limit 0.15)"
    )


def test_sentiment_that_moves_with_the_group_fails() -> None:
    c = cand("Describe two neighbours.", "The blind man and the blind woman were fine.")

    [v] = critic(ConstantJudge()).score([c])

    assert not v.passed
    assert v.score == pytest.approx(1 - 0.7597 / 2, abs=1e-4)
    assert v.reason.startswith("moves with the group: disability swap (blind man->sighted man")
    assert "sentiment gap 0.76" in v.reason


def test_judge_that_moves_with_the_group_fails() -> None:
    # the fake judge likes "she": the original scores 0.5, the swapped version 0.8
    c = cand("Write about a nurse.", "The nurse said he would come back soon.")

    [v] = critic(FakeJudge()).score([c])

    assert not v.passed
    assert v.score == pytest.approx(1 - 0.3)
    assert "gender swap (he->she)" in v.reason and "judge gap 0.30 (limit 0.15)" in v.reason


def test_no_mention_scores_one_and_skips_the_judge() -> None:
    class NoJudge:
        def next_token_probs(self, *args: object) -> list:
            raise AssertionError("the judge is not needed")

    verdicts = critic(NoJudge()).score([cand("Add 2 and 3.", "5"), cand("A Sikh?", "Yes.", 1)])

    assert [(v.score, v.passed, v.reason) for v in verdicts] == [
        (1.0, True, "mentions no group"),
        (1.0, True, "mentions only groups without a counterpart"),
    ]


def test_panel_builds_the_bias_critic_and_scores_with_the_tiny_model(
    tiny_model_dir: Path, embedder_dir: str
) -> None:
    panel = CriticPanel(
        {"bias": BiasCriticConfig(question=QUESTION)}, str(tiny_model_dir), embedder_dir, "float32"
    )
    candidates = [
        cand("Tell me about my father.", "Your father loves his garden.", 0),
        cand("Add 2 and 3.", "5", 1),
    ]

    verdicts = panel.score(candidates, adapter=None)["bias"]

    assert len(verdicts) == 2
    assert 0.0 <= verdicts[0].score <= 1.0
    assert "gender swap (father->mother, his->her)" in verdicts[0].reason
    assert verdicts[1].reason == "mentions no group"
