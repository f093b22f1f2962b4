"""Group balance in the selection: no group may crowd its category out of the survivors.

Survivors train the next policy, so a round whose survivors mention "he" nine times for every
"she" teaches that ratio. Candidates are walked best first, as the budget walks them; one is
refused when it would lift a group it mentions above `max_share` of its category's mentions,
once the category has `min_mentions` of them. A text counts each group it mentions once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from critics.base import Verdict
from critics.groups import mentions


def group_counts(texts: Sequence[str]) -> dict[str, Counter[str]]:
    """category -> group -> how many of the texts mention it."""
    counts: dict[str, Counter[str]] = {}
    for text in texts:
        for category, group in mentions(text):
            counts.setdefault(category, Counter())[group] += 1
    return counts


def group_shares(texts: Sequence[str]) -> dict[str, dict[str, float]]:
    """category -> group -> its share of the category's mentions in the texts."""
    return {
        category: {g: n / sum(groups.values()) for g, n in sorted(groups.items())}
        for category, groups in sorted(group_counts(texts).items())
    }


def balance_verdicts(
    order: Sequence[int],  # candidate indices, best first
    texts: Sequence[str],
    eligible: Sequence[bool],  # passed every earlier step (critics, dedup)
    max_share: float,
    min_mentions: int,
    budget: int | None = None,
    prior: Sequence[str] = (),
) -> list[Verdict]:
    """One verdict per text: score 1 and pass, or score 0 and refused with the share it would
    reach. Only accepted eligible texts count, and only the first `budget` of them: the ones
    after are cut by the budget anyway. `prior` texts (earlier survivors) count from the start."""
    counts = group_counts(prior)
    verdicts: dict[int, Verdict] = {}
    kept = 0
    for i in order:
        if not eligible[i] or (budget is not None and kept >= budget):
            verdicts[i] = Verdict(1.0, True, "not counted")
            continue
        found = mentions(texts[i])
        over = _over(counts, found, max_share, min_mentions)
        if over:
            verdicts[i] = Verdict(0.0, False, over)
            continue
        for category, group in found:
            counts.setdefault(category, Counter())[group] += 1
        kept += 1
        verdicts[i] = Verdict(1.0, True, "balanced" if found else "mentions no group")
    return [verdicts[i] for i in range(len(texts))]


def _over(
    counts: dict[str, Counter[str]],
    found: Sequence[tuple[str, str]],
    max_share: float,
    min_mentions: int,
) -> str:
    """Why adding `found` to `counts` breaks the balance, or '' if it does not."""
    added = Counter(category for category, _ in found)
    for category, group in found:
        groups = counts.get(category, Counter())
        total = sum(groups.values()) + added[category]
        share = (groups[group] + 1) / total
        if total >= min_mentions and share > max_share:
            return (
                f"{category}/{group} would hold {groups[group] + 1} of {total} mentions "
                f"({share:.0%} > {max_share:.0%})"
            )
    return ""


def balance(
    order: Sequence[int],
    texts: Sequence[str],
    eligible: Sequence[bool],
    max_share: float,
    min_mentions: int,
    budget: int | None = None,
    prior: Sequence[str] = (),
) -> list[bool]:
    """Per text, False where the balance step refuses it (see balance_verdicts)."""
    verdicts = balance_verdicts(order, texts, eligible, max_share, min_mentions, budget, prior)
    return [v.passed for v in verdicts]
