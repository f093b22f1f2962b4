import math

import pytest

from loop.errors import ConfigError
from loop.policy import Policy
from loop.retention import (
    Passage,
    Question,
    choice_reply,
    compare,
    load_passages,
    load_questions,
    multiple_choice,
    paired_difference,
    perplexity,
    perplexity_ratio,
    retention,
)


class FakeScorer:
    """Fixed scores: texts and replies map to (sum of log-probabilities, tokens)."""

    def __init__(self, texts=None, replies=None):
        self.texts, self.replies, self.prompts = texts or {}, replies or {}, []

    def text_logprobs(self, texts, prefix=""):
        return [self.texts[t] for t in texts]

    def completion_logprobs(self, prompts, completions):
        self.prompts.extend(prompts)
        return [self.replies[c] for c in completions]


PASSAGES = [Passage("a", "first"), Passage("b", "second")]


def test_perplexity_pools_tokens_across_texts():
    # NLL 2 over 2 tokens and 6 over 3: exp(8 / 5), not the mean of exp(1) and exp(2).
    result = perplexity(FakeScorer({"first": (-2.0, 2), "second": (-6.0, 3)}), PASSAGES)
    ppl = result["perplexity"]
    assert ppl["mean"] == pytest.approx(math.exp(1.6)) and ppl["n"] == 2
    # Resamples of two texts give exp(1), exp(1.6) or exp(2): the interval lies within them.
    assert math.exp(1.0) - 1e-9 <= ppl["lo"] <= ppl["mean"] <= ppl["hi"] <= math.exp(2.0) + 1e-9
    assert [i["nll_per_token"] for i in result["items"]] == [1.0, 2.0]
    assert [i["tokens"] for i in result["items"]] == [2, 3]


def test_perplexity_ratio_is_paired():
    base = perplexity(FakeScorer({"first": (-2.0, 2), "second": (-6.0, 3)}), PASSAGES)
    worse = perplexity(FakeScorer({"first": (-4.0, 2), "second": (-6.0, 3)}), PASSAGES)
    ratio = perplexity_ratio(base, worse)
    assert ratio["mean"] == pytest.approx(math.exp(2.0 / 5))
    # Resamples: both texts "a" -> exp(1), both "b" -> 1, one each -> exp(0.4).
    assert 1.0 - 1e-9 <= ratio["lo"] <= ratio["hi"] <= math.exp(1.0) + 1e-9
    assert perplexity_ratio(base, base) == {"mean": 1.0, "lo": 1.0, "hi": 1.0, "n": 2}
    with pytest.raises(ValueError, match="same passages"):
        perplexity_ratio(base, perplexity(FakeScorer({"first": (-1.0, 1)}), PASSAGES[:1]))


def test_multiple_choice_picks_the_best_mean_per_token():
    questions = [
        Question("q1", "Sky colour?", ("Blue", "Green"), 0),
        # "Long" sums higher (-4 > -6) but "Short" is better per token (-1 > -2): mean wins,
        # and the answer is "Long", so this one counts as wrong.
        Question("q2", "Which?", ("Short", "Long"), 1),
    ]
    replies = {
        choice_reply("Blue"): (-3.0, 3),
        choice_reply("Green"): (-4.0, 2),
        choice_reply("Short"): (-6.0, 6),
        choice_reply("Long"): (-4.0, 2),
    }
    fake = FakeScorer(replies=replies)
    result = multiple_choice(fake, questions)
    assert [i["picked"] for i in result["items"]] == [0, 0]
    assert [i["correct"] for i in result["items"]] == [1, 0]
    assert result["items"][0]["scores"] == [-1.0, -2.0]
    assert result["accuracy"]["mean"] == 0.5 and result["accuracy"]["n"] == 2
    assert fake.prompts[0] == [{"role": "user", "content": "Sky colour?"}]


def test_paired_difference_and_compare():
    change = paired_difference([1, 1, 0, 1], [1, 0, 0, 0])
    assert change["mean"] == -0.5 and change["n"] == 4 and change["lo"] <= -0.5 <= change["hi"]
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference([1, 0], [1])

    questions = [Question("q", "Sky?", ("Blue", "Red"), 0)]
    good = FakeScorer(
        {"first": (-2.0, 2), "second": (-6.0, 3)},
        {"The answer is: Blue.": (-1, 1), "The answer is: Red.": (-2, 1)},
    )
    bad = FakeScorer(
        {"first": (-4.0, 2), "second": (-6.0, 3)},
        {"The answer is: Blue.": (-2, 1), "The answer is: Red.": (-1, 1)},
    )
    figures = compare(retention(good, PASSAGES, questions), retention(bad, PASSAGES, questions))
    assert figures["mc_change"]["mean"] == -1.0
    assert figures["perplexity_ratio"]["mean"] == pytest.approx(math.exp(0.4))
    assert figures["base"]["mc"]["mean"] == 1.0 and figures["adapter"]["mc"]["mean"] == 0.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": 2}', "'answer' must be"),
        ('{"id": "x", "question": "Q?", "choices": "ab", "answer": 0}', "'choices' must be"),
        ('{"id": "x", "question": "", "choices": ["a", "b"], "answer": 0}', "'question' field"),
        ('{"id": "x", "question": "Q?", "choices": ["a", "b"], "answer": true}', "'answer'"),
        ("{not json", "not valid JSON"),
        ('["a list"]', "one JSON object"),
    ],
)
def test_question_file_errors_name_the_line(tmp_path, line, message):
    good = '{"id": "ok", "question": "Q?", "choices": ["a", "b"], "answer": 0}'
    path = tmp_path / "mc.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(ConfigError, match=message) as err:
        load_questions(path)
    assert f"{path}:3:" in str(err.value)


def test_passage_file_errors(tmp_path):
    path = tmp_path / "text.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n{"id": "b"}\n')
    with pytest.raises(ConfigError, match=r"text\.jsonl:2: .*'text' field"):
        load_passages(path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no passages"):
        load_passages(tmp_path / "empty.jsonl")
    with pytest.raises(ConfigError, match="does not exist"):
        load_passages(tmp_path / "missing.jsonl")


def test_shipped_data_is_well_formed():
    passages, questions = load_passages(), load_questions()
    assert len(passages) >= 40 and len(questions) >= 40
    assert len({p.id for p in passages}) == len(passages)
    assert len({q.id for q in questions}) == len(questions)
    assert all(len(q.choices) == 4 for q in questions)
    # Right answers spread evenly over the positions, so a position bias cannot pass as skill.
    counts = [sum(q.answer == k for q in questions) for k in range(4)]
    assert max(counts) - min(counts) <= 2


def test_tiny_model_runs_on_the_shipped_files(tiny_model_dir):
    policy = Policy(str(tiny_model_dir), "float32")
    passages, questions = load_passages(), load_questions()
    result = retention(policy, passages, questions)
    ppl = result["text"]["perplexity"]
    assert ppl["n"] == len(passages) and 1 < ppl["lo"] <= ppl["mean"] <= ppl["hi"]
    assert all(i["tokens"] > 10 for i in result["text"]["items"])
    assert result["mc"]["accuracy"]["n"] == len(questions)
    same = compare(result, result)
    assert same["perplexity_ratio"]["mean"] == 1.0 and same["mc_change"]["mean"] == 0.0


@pytest.mark.slow
def test_default_model_beats_chance_on_the_questions(default_model_dir):
    policy = Policy(default_model_dir, "bfloat16")
    accuracy = multiple_choice(policy, load_questions())["accuracy"]
    assert accuracy["lo"] > 0.25, accuracy  # measured 0.800 [0.675, 0.925]
    ppl = perplexity(policy, load_passages())["perplexity"]
    assert ppl["hi"] < 60, ppl  # measured 22.7 [20.1, 25.9]; the tiny random model is ~50000
