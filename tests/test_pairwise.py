"""The pairwise judge: both-order combination against manual probability reads on a tiny model,
position bias cancelling on a fake judge, and the critic's verdicts over sibling candidates."""

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from critics.base import Candidate, Verdict
from critics.pairwise import (
    A_B,
    PairResult,
    PairwiseCritic,
    combine,
    compare,
    pairwise_conversation,
    position_consistency,
)
from critics.panel import CriticPanel
from critics.verifier import VerifierCritic
from loop.config import PairwiseCriticConfig, VerifierCriticConfig
from loop.policy import Conversation, Policy

QUESTION = "Which response answers the instruction better?"


@pytest.fixture(scope="module")
def policy(tiny_model_dir: Path) -> Policy:
    return Policy(str(tiny_model_dir), dtype="float32")


class FakeJudge:
    """Stands in for Policy.next_token_probs: P(A) = 0.9 when `favour` says so, else 0.1."""

    def __init__(self, favour_a) -> None:
        self.favour_a = favour_a
        self.calls = 0

    def next_token_probs(
        self, convs: Sequence[Conversation], options: dict, batch_size: int = 16
    ) -> list[dict[str, float]]:
        self.calls += 1
        out = []
        for conv in convs:
            text = conv[-1]["content"]
            shown_a = text.split("Response A: ")[1].split("\n\nResponse B: ")[0]
            p_a = 0.9 if self.favour_a(shown_a) else 0.1
            out.append({"A": p_a * 0.5, "B": (1 - p_a) * 0.5})  # mass off A and B is ignored
        return out


def candidate(cid: str, prompt_id: str, response: str) -> Candidate:
    return Candidate(cid, prompt_id, "seed", f"Instruction {prompt_id}.", response, 10, True)


def test_option_strings_are_single_tokens(policy: Policy) -> None:
    encoded = {w: policy.tokenizer.encode(w, add_special_tokens=False) for w in A_B["A"] + A_B["B"]}

    assert encoded == {"A": [49], " A": [330], "B": [50], " B": [389]}


def test_both_orders_combine_as_the_mean_of_a_first_and_a_second(policy: Policy) -> None:
    triples = [
        ("Say hi.", "Hello there, friend!", "Go away."),
        ("Name a colour.", "Blue.", "A colour is a property of light that we see."),
    ]

    results = compare(policy, QUESTION, triples)

    for (instruction, a, b), got in zip(triples, results, strict=True):
        ab, ba = policy.next_token_probs(
            [
                pairwise_conversation(QUESTION, instruction, a, b),
                pairwise_conversation(QUESTION, instruction, b, a),
            ],
            A_B,
        )
        a_first = ab["A"] / (ab["A"] + ab["B"])
        a_second = ba["B"] / (ba["A"] + ba["B"])
        assert got.a_first == pytest.approx(a_first, rel=1e-4)
        assert got.a_second == pytest.approx(a_second, rel=1e-4)
        assert got.win == pytest.approx((a_first + a_second) / 2, rel=1e-4)
        assert got.consistent == ((a_first > 0.5) == (a_second > 0.5))


def test_pure_position_bias_cancels_and_is_never_consistent() -> None:
    judge = FakeJudge(lambda shown_a: True)  # always "A", whatever is shown there
    triples = [("Say hi.", "Hello!", "Bye."), ("Count.", "1 2 3", "3 2 1")]

    results = compare(judge, QUESTION, triples)

    assert results == [PairResult(pytest.approx(0.5), 0.9, pytest.approx(0.1), False)] * 2
    assert position_consistency(results) == 0.0
    assert judge.calls == 1  # both orders of every pair go in one batch call


def test_a_judge_that_sees_the_content_is_consistent() -> None:
    judge = FakeJudge(lambda shown_a: "GOOD" in shown_a)
    triples = [("Say hi.", "GOOD hello!", "Bye."), ("Count.", "3 2 1", "GOOD 1 2 3")]

    results = compare(judge, QUESTION, triples)

    assert [r.win for r in results] == [pytest.approx(0.9), pytest.approx(0.1)]
    assert [r.consistent for r in results] == [True, True]
    assert position_consistency(results) == 1.0


def test_combine_and_consistency_edge_cases() -> None:
    assert combine(0.8, 0.6) == PairResult(0.7, 0.8, 0.6, True)
    assert combine(0.2, 0.4).consistent  # both orders prefer b
    assert not combine(0.5, 0.9).consistent  # a tie in one order is no preference
    assert math.isnan(position_consistency([]))
    assert position_consistency([combine(0.8, 0.6), combine(0.8, 0.2)]) == 0.5


def test_pairwise_critic_scores_each_candidate_against_its_siblings() -> None:
    judge = FakeJudge(lambda shown_a: "GOOD" in shown_a)
    critic = PairwiseCritic("pair", QUESTION, threshold=0.3, policy=judge)
    candidates = [
        candidate("p1:s0", "p1", "GOOD answer"),
        candidate("p2:s0", "p2", "alone in its group"),
        candidate("p1:s1", "p1", "weak answer"),
        candidate("p1:s2", "p1", "GOOD answer too"),
    ]

    verdicts = critic.score(candidates)

    # p1: s0 vs s1 -> 0.9 / 0.1; s0 vs s2 -> both GOOD: A shown wins, 0.5 and not consistent;
    # s1 vs s2 -> 0.1 / 0.9.
    top = "wins 0.70 against 2 siblings; order-consistent 1/2"
    low = "wins 0.10 against 2 siblings; order-consistent 2/2"
    assert verdicts == [
        Verdict(pytest.approx(0.7), True, top, 0.5),
        Verdict(0.5, True, "no sibling to compare", None),
        Verdict(pytest.approx(0.1), False, low, 1.0),
        Verdict(pytest.approx(0.7), True, top, 0.5),
    ]


def test_pairwise_critic_with_one_sibling_names_it_singular() -> None:
    critic = PairwiseCritic("pair", QUESTION, 0.0, FakeJudge(lambda shown_a: "GOOD" in shown_a))

    verdicts = critic.score([candidate("a", "p", "weak"), candidate("b", "p", "GOOD")])

    assert [v.reason for v in verdicts] == [
        "wins 0.10 against 1 sibling; order-consistent 1/1",
        "wins 0.90 against 1 sibling; order-consistent 1/1",
    ]
    assert all(v.passed for v in verdicts)  # the default threshold 0.0 only ranks


def test_panel_builds_the_pairwise_and_verifier_critics(
    tiny_model_dir: Path, embedder_dir: str
) -> None:
    critics = {"pair": PairwiseCriticConfig(), "maths": VerifierCriticConfig(checker="numeric")}
    panel = CriticPanel(critics, str(tiny_model_dir), embedder_dir, "float32")
    c = Candidate("c", "p", "seed", "What is 2 + 2?", "2 + 2 = 4. The answer is 4.", 9, True)
    sibling = Candidate("d", "p", "seed", "What is 2 + 2?", "The answer is 5.", 5, True, False, "4")

    verdicts = panel.score([c, sibling], None)

    assert isinstance(panel.critics["pair"], PairwiseCritic)
    assert isinstance(panel.critics["maths"], VerifierCritic)
    pair = verdicts["pair"]
    assert pair[0].score == pytest.approx(1.0 - pair[1].score)
    assert pair[0].consistent == pair[1].consistent
    assert verdicts["maths"] == [
        Verdict(0.0, False, "no reference answer"),
        Verdict(0.0, False, "answer 5 but the reference is 4"),
    ]
    (result,) = panel.compare(QUESTION, [("What is 2 + 2?", c.response, sibling.response)], None)
    assert result.win == pytest.approx(pair[0].score)
