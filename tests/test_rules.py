"""The rule critic: its two scorers against hand-computed values, and its exact verdicts."""

import pytest

from critics.base import Candidate, Verdict
from critics.rules import (
    RulesCritic,
    echo_score,
    language_of,
    repeat_ratio,
    stock_phrase,
    words,
)
from loop.config import RulesCriticConfig

INSTRUCTION = "Give me some tips for making small talk with strangers at a party."


def candidate(
    cid: str, response: str, finished: bool = True, tokens: int = 40, trimmed: bool = False
) -> Candidate:
    return Candidate(
        id=cid,
        prompt_id="seed-002",
        source="seed",
        instruction=INSTRUCTION,
        response=response,
        tokens=tokens,
        finished=finished,
        trimmed=trimmed,
    )


def test_words_lowercase_and_keep_contractions() -> None:
    assert words("Ahoy, Matey! Don't sink.") == ["ahoy", "matey", "don't", "sink"]
    assert words("... !!") == []


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        # 4 trigrams (abc, bca, cab, abc), 3 distinct: 1 - 3/4
        ("a b c a b c", 3, 0.25),
        # fewer words than n: no n-grams at all
        ("a b", 3, 0.0),
        ("the cat sat", 3, 0.0),
        # 4 unigrams, 1 distinct: 1 - 1/4
        ("go go go go", 1, 0.75),
        # case and punctuation are ignored: yes yes yes, 1 - 1/3
        ("Yes, yes. YES!", 1, 2 / 3),
        # 12 words -> 10 trigrams, 2 distinct ("the sea the", "sea the sea"): 1 - 2/10
        ("the sea the sea the sea the sea the sea the sea", 3, 0.8),
        # bigrams (don't, don't), (don't, stop): none repeats
        ("don't don't stop", 2, 0.0),
    ],
)
def test_repeat_ratio(text: str, n: int, expected: float) -> None:
    assert repeat_ratio(text, n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("instruction", "response", "expected"),
    [
        ("Tell me a joke.", "Tell me a joke.", 1.0),
        # LCS "name three" = 2 of 3 and 3 tokens: F1 = 2 * 2 / (3 + 3)
        ("Name three planets", "Name three rivers", 2 / 3),
        # LCS "the sea" = 2; 3 and 8 tokens: F1 = 2 * 2 / (3 + 8)
        ("Describe the sea", "The sea is wide and I describe it", 4 / 11),
        ("Name three planets", "Ahoy matey", 0.0),
    ],
)
def test_echo_score(instruction: str, response: str, expected: float) -> None:
    assert echo_score(instruction, response) == pytest.approx(expected)


def test_rules_critic_exact_verdicts() -> None:
    critic = RulesCritic(
        "rules", RulesCriticConfig(min_words=5, ngram=3, max_repeat_ratio=0.4, max_echo=0.8)
    )
    padded = " ".join(["Ahoy matey, a calm sea makes a happy crew."] * 8)
    candidates = [
        candidate("empty", ""),
        candidate("punctuation", " ... !! "),
        candidate("short", "Aye, matey."),
        candidate("truncated", "Ahoy matey, the tide waits for no sailor and", False, 96),
        # cut at the limit but trimmed back to a full sentence: the truncation rule lets it pass
        candidate("trimmed", "Ahoy matey, the tide waits for no sailor.", False, 96, True),
        candidate("loop", "the sea the sea the sea the sea the sea the sea"),
        candidate("echo", INSTRUCTION.replace(".", ", please.")),
        candidate("padded", padded),
        candidate("five-words", "Ask them about their day."),
        candidate(
            "good",
            "Ahoy matey! Ask folk how they know the host, listen well, and share a short tale "
            "of your own before you sail on to the next guest.",
        ),
    ]

    verdicts = critic.score(candidates)

    assert verdicts == [
        Verdict(0.0, False, "empty response"),
        Verdict(0.0, False, "empty response"),
        Verdict(0.0, False, "too short: 2 words < 5"),
        Verdict(0.0, False, "truncated mid-sentence at the token limit (96 tokens)"),
        Verdict(1.0, True, "passes all rules"),
        Verdict(0.0, False, "repetitive: 0.80 of 3-grams repeat"),
        # 13 of 13 and 14 tokens in common: F1 = 2 * 13 / 27 = 0.96
        Verdict(0.0, False, "echoes the instruction: ROUGE-L 0.96"),
        # 72 words -> 70 trigrams, 9 distinct (one per word of the sentence): 1 - 9/70 = 0.87
        Verdict(0.0, False, "repetitive: 0.87 of 3-grams repeat"),
        Verdict(1.0, True, "passes all rules"),
        Verdict(1.0, True, "passes all rules"),
    ]


def test_rules_are_checked_in_order() -> None:
    critic = RulesCritic("rules", RulesCriticConfig(min_words=5))
    short_and_cut = candidate("c", "Aye.", finished=False)

    assert critic.check(short_and_cut) == "too short: 1 words < 5"


GOOD = (
    "Ahoy matey! Ask folk how they know the host, listen well, and share a short tale "
    "of your own before you sail on to the next guest."
)  # 27 words
FILLER = " Small talk is a big part of every party."  # 9 words


def test_content_rules_exact_verdicts() -> None:
    critic = RulesCritic(
        "rules",
        RulesCriticConfig(
            min_words=3, max_repeat_ratio=0.4, refusals=True, language="en", language_min_words=5
        ),
    )
    candidates = [
        candidate("refusal", "I'm sorry, but I can't help with planning conversations."),
        candidate("curly", "As an AI, I don\u2019t go to parties, but ask about their day."),
        candidate("opener", "Sure, here are some tips: ask how they know the host and listen."),
        candidate("closer", "Ask how they know the host and listen well. I hope this helps!"),
        candidate(
            "french",
            "Demandez aux invités comment ils connaissent l'hôte et écoutez bien leurs réponses.",
        ),
        candidate(
            "german", "Fragen Sie die Gäste, woher sie den Gastgeber kennen, und hören Sie zu."
        ),
        # under language_min_words: too short to judge its language, so it passes
        candidate("short-french", "Merci beaucoup, mon ami."),
        candidate("padded-long", GOOD + FILLER * 45),
        candidate("padded", GOOD + FILLER * 10),
        candidate("good", GOOD),
    ]

    verdicts = critic.score(candidates)

    assert [v.reason for v in verdicts] == [
        "refusal: \"I'm sorry, but I can't\"",
        'refusal: "As an AI"',  # the curly apostrophe does not hide it
        'boilerplate: "Sure, here are"',
        'boilerplate: "I hope this helps"',
        "wrong language: fr (p=1.00), not en",
        "wrong language: de (p=1.00), not en",
        "passes all rules",
        # 27 + 45 * 9 words
        "too long: 432 words > 400",
        # 117 words -> 115 trigrams; distinct: 25 in the answer, 2 across the seam, 9 in the
        # filler's cycle: 1 - 36/115 = 0.69
        "repetitive: 0.69 of 3-grams repeat",
        "passes all rules",
    ]
    assert [v.passed for v in verdicts] == [False] * 6 + [True, False, False, True]
    assert [v.score for v in verdicts] == [0.0] * 6 + [1.0, 0.0, 0.0, 1.0]


def test_content_rules_are_off_by_default() -> None:
    critic = RulesCritic("rules", RulesCriticConfig())
    texts = ["I'm sorry, but I can't help with that.", "Fragen Sie die Gäste, woher sie kommen."]

    verdicts = critic.score([candidate(str(i), t) for i, t in enumerate(texts)])

    assert verdicts == [Verdict(1.0, True, "passes all rules")] * 2


def test_language_rule_names_the_detected_language_and_its_confidence() -> None:
    lang, confidence = language_of(GOOD)

    assert lang == "en"
    assert 0.5 < confidence <= 1.0
    assert stock_phrase(GOOD) is None
