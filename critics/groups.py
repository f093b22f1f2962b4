"""Social groups as words: which groups a text mentions, and the text with a group swapped.

Each category (gender, race_ethnicity, ...) lists its groups by the words that name them. Words
that also have an everyday meaning ("white", "old", "blind", "straight", "disabled") count only
in front of a person noun ("white people", "old man"), so "an old car" mentions no group. Matching
is by whole word, any case; "non-disabled" is one word, so it never also counts as "disabled".

A swap replaces each term with its counterpart in the other group of its pair (he -> she,
Christian -> Muslim). Some terms swap one way only: "gay" becomes "straight", but a bare
"straight" is no term, so only "straight people" swaps back. Terms without a counterpart
("lesbian" has one, "Arab" has none) are mentioned but left as they are. The article in front of
a swapped term follows its new first letter (an American -> a Mexican).

her/his need one rule: "her" becomes "his" when a content word follows it ("her car" -> "his
car") and "him" otherwise ("told her the truth", "saw her."); "his" becomes "her" before a content
word and "hers" otherwise ("the choice is his." -> "the choice is hers."). The function words
below decide what is not a content word; "made her laugh" comes out as "made his laugh".
"""

from __future__ import annotations

import re
from functools import cache

PERSON_NOUNS = (
    "person", "people", "man", "men", "woman", "women", "boy", "boys", "girl", "girls", "kid",
    "kids", "child", "children", "adult", "adults", "family", "families", "student", "students",
    "worker", "workers", "employee", "employees", "patient", "patients", "customer", "customers",
    "friend", "friends", "neighbor", "neighbors", "guy", "guys", "folks", "individual",
    "individuals", "couple", "couples", "community", "communities",
)  # fmt: skip

FUNCTION_WORDS = frozenset(
    """a an the this that these those some any no every each all both to for with at in on by
    from of about into onto over under up down out off back away again too very so not and or but
    nor because if when while as than then now here there today yesterday tomorrow tonight i you
    he she it we they me him her us them my your his its our their is was are were be been am has
    have had do does did will would can could should may might must""".split()
)

Entry = tuple[str, str, str | None]  # (group, term, counterpart or None)


def _both(a: str, b: str, pairs: list[tuple[str, str]]) -> list[Entry]:
    """Terms of groups a and b that swap into each other."""
    return [(a, x, y) for x, y in pairs] + [(b, y, x) for x, y in pairs]


def _one_way(group: str, pairs: list[tuple[str, str]]) -> list[Entry]:
    """Terms of `group` that swap into a word which is itself no term."""
    return [(group, x, y) for x, y in pairs]


def _only(group: str, terms: str) -> list[Entry]:
    """Terms that mention `group` and have no counterpart."""
    return [(group, t.replace("_", " "), None) for t in terms.split()]


def _people(a: str, b: str) -> list[tuple[str, str]]:
    return [(f"{a} {n}", f"{b} {n}") for n in PERSON_NOUNS]


def _pairs(spec: str) -> list[tuple[str, str]]:
    """'he/she senior_citizen/young_adult' -> [(he, she), (senior citizen, young adult)]."""
    out = []
    for pair in spec.split():
        a, b = pair.replace("_", " ").split("/")
        out.append((a, b))
    return out


_GENDER_PAIRS = (
    "he/she himself/herself man/woman men/women boy/girl boys/girls father/mother fathers/mothers "
    "dad/mom dads/moms son/daughter sons/daughters brother/sister brothers/sisters husband/wife "
    "husbands/wives boyfriend/girlfriend boyfriends/girlfriends uncle/aunt uncles/aunts "
    "nephew/niece nephews/nieces grandfather/grandmother grandfathers/grandmothers "
    "grandson/granddaughter grandsons/granddaughters king/queen kings/queens prince/princess "
    "princes/princesses male/female males/females gentleman/lady gentlemen/ladies mr/mrs "
    "sir/madam actor/actress actors/actresses waiter/waitress waiters/waitresses "
    "businessman/businesswoman businessmen/businesswomen chairman/chairwoman "
    "spokesman/spokeswoman groom/bride grooms/brides widower/widow masculine/feminine "
    "fatherhood/motherhood"
)

CATEGORIES: dict[str, list[Entry]] = {
    "gender": [
        *_both("male", "female", _pairs(_GENDER_PAIRS)),
        # him/his/her/hers: the counterpart of "his" and "her" is settled by the next word.
        *_one_way("male", _pairs("him/her his/her")),
        *_one_way("female", _pairs("her/his hers/his")),
    ],
    "race_ethnicity": [
        *_both("black", "white", _people("black", "white")),
        *_both("black", "white", _pairs("blacks/whites african-american/european-american")),
        *_both("black", "white", _pairs("african_american/european_american")),
        *_both("black", "white", _pairs("african_americans/european_americans")),
        *_both("asian", "hispanic", _pairs("asian/hispanic asians/hispanics")),
        *_both("asian", "hispanic", _pairs("asian_american/hispanic_american")),
        *_both("asian", "hispanic", _pairs("asian_americans/hispanic_americans")),
        *_one_way("hispanic", _pairs("latino/asian latinos/asians latina/asian latinas/asians")),
        *_only("arab", "arab arabs"),
        *_only("native_american", "native_american native_americans"),
    ],
    "religion": [
        *_both(
            "christian",
            "muslim",
            _pairs(
                "christian/muslim christians/muslims christianity/islam church/mosque "
                "churches/mosques"
            ),
        ),
        *_one_way("muslim", _pairs("islamic/christian")),
        *_both("jewish", "hindu", _pairs("jewish/hindu jews/hindus judaism/hinduism")),
        *_one_way("jewish", _pairs("jew/hindu synagogue/temple synagogues/temples")),
        *_both("buddhist", "atheist", _pairs("buddhist/atheist buddhists/atheists")),
        *_both("buddhist", "atheist", _pairs("buddhism/atheism")),
        *_both("catholic", "protestant", _pairs("catholic/protestant catholics/protestants")),
        *_both("catholic", "protestant", _pairs("catholicism/protestantism")),
        *_only("sikh", "sikh sikhs sikhism"),
    ],
    "age": [
        *_one_way("young", _pairs("young/old younger/older youngest/oldest")),
        *_one_way("old", _people("old", "young") + _people("older", "younger")),
        *_one_way("old", _pairs("elderly/young senior_citizen/young_adult")),
        *_one_way("old", _pairs("senior_citizens/young_adults")),
        *_both("young", "old", _pairs("teenager/retiree teenagers/retirees")),
        *_both("young", "old", _pairs("millennial/boomer millennials/boomers")),
    ],
    "nationality": [
        *_both("american", "mexican", _pairs("american/mexican americans/mexicans")),
        *_both("american", "mexican", _pairs("america/mexico")),
        *_both("british", "indian", _pairs("british/indian britons/indians britain/india")),
        *_both("chinese", "nigerian", _pairs("chinese/nigerian china/nigeria")),
        *_one_way("nigerian", _pairs("nigerians/chinese")),
        *_both("french", "russian", _pairs("french/russian france/russia")),
        *_one_way("russian", _pairs("russians/french")),
        *_both("canadian", "brazilian", _pairs("canadian/brazilian canadians/brazilians")),
        *_both("canadian", "brazilian", _pairs("canada/brazil")),
    ],
    "disability": [
        *_both("disabled", "non_disabled", _people("disabled", "non-disabled")),
        *_one_way("non_disabled", _pairs("non-disabled/disabled")),
        *_both("disabled", "non_disabled", _pairs("with_a_disability/without_a_disability")),
        *_both("disabled", "non_disabled", _pairs("with_disabilities/without_disabilities")),
        *_both("blind", "sighted", _people("blind", "sighted")),
        *_one_way("deaf", _pairs("deaf/hearing")),
        *_one_way("hearing", _people("hearing", "deaf")),
        *_both("autistic", "neurotypical", _pairs("autistic/neurotypical")),
        *_both("mentally_ill", "mentally_healthy", _pairs("mentally_ill/mentally_healthy")),
        *_only("disabled", "wheelchair_user wheelchair_users disability disabilities"),
    ],
    "sexual_orientation": [
        *_one_way("gay", _pairs("gay/straight gays/straights")),
        *_one_way("straight", _people("straight", "gay")),
        *_both("homosexual", "heterosexual", _pairs("homosexual/heterosexual")),
        *_both("homosexual", "heterosexual", _pairs("homosexuals/heterosexuals")),
        *_one_way("lesbian", _pairs("lesbian/straight_woman lesbians/straight_women")),
        *_only("bisexual", "bisexual bisexuals"),
    ],
}


# ---- matching ------------------------------------------------------------------------------


@cache
def _index(category: str) -> tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]:
    """The category's term pattern and term -> (group, counterpart). Longer terms come first in
    the alternation, so "white people" wins over a shorter term inside it."""
    if category not in CATEGORIES:
        known = ", ".join(CATEGORIES)
        raise ValueError(f"unknown group category {category!r}; known: {known}")
    table = {term: (group, other) for group, term, other in CATEGORIES[category]}
    alternatives = "|".join(
        r"\s+".join(map(re.escape, t.split())) for t in sorted(table, key=len, reverse=True)
    )
    pattern = re.compile(
        rf"(?:(?<![\w-])(?P<art>an?)\s+)?(?<![\w-])(?P<term>{alternatives})(?![\w-])",
        re.IGNORECASE,
    )
    return pattern, table


def _key(matched: str) -> str:
    return " ".join(matched.lower().split())


def mentions(text: str) -> list[tuple[str, str]]:
    """Each (category, group) the text mentions, once, in order of first mention."""
    found: list[tuple[int, str, str]] = []
    for category in CATEGORIES:
        pattern, table = _index(category)
        for m in pattern.finditer(text):
            found.append((m.start("term"), category, table[_key(m["term"])][0]))
    seen: dict[tuple[str, str], None] = {}
    for _, category, group in sorted(found):
        seen.setdefault((category, group), None)
    return list(seen)


# ---- swapping ------------------------------------------------------------------------------

_NEXT_WORD = re.compile(r"[ \t]+([A-Za-z']+)")
_BEFORE_WORD = {"her": "his", "his": "her"}  # possessive before a content word
_OTHERWISE = {"her": "him", "his": "hers"}  # object or standalone


def _counterpart(term: str, default: str, text: str, end: int) -> str:
    if term not in _BEFORE_WORD:
        return default
    nxt = _NEXT_WORD.match(text, end)
    content = nxt is not None and nxt[1].lower() not in FUNCTION_WORDS
    return _BEFORE_WORD[term] if content else _OTHERWISE[term]


def _like(original: str, new: str) -> str:
    """`new` with the case of `original`: all capitals, or the first letter's case."""
    if len(original) > 1 and original.isupper():
        return new.upper()
    return (new[0].upper() if original[0].isupper() else new[0].lower()) + new[1:]


def swap_with_changes(text: str, category: str) -> tuple[str, list[tuple[str, str]]]:
    """The text with every term of `category` replaced by its counterpart, and the (old, new)
    term pairs replaced, in order. Terms without a counterpart stay."""
    pattern, table = _index(category)
    changes: list[tuple[str, str]] = []

    def replace(m: re.Match[str]) -> str:
        term = m["term"]
        other = table[_key(term)][1]
        if other is None:
            return m[0]
        new = _like(term, _counterpart(_key(term), other, text, m.end()))
        changes.append((term, new))
        art = m["art"]
        if art is None:
            return new
        article = "an" if new[0].lower() in "aeiou" else "a"
        return _like(art, article) + m[0][len(art) : m.start("term") - m.start()] + new

    return pattern.sub(replace, text), changes


def swap(text: str, category: str) -> str:
    """The text with every term of `category` replaced by its counterpart (he -> she, Christian ->
    Muslim), keeping the case of each term's first letter."""
    return swap_with_changes(text, category)[0]
