"""How the default policy does as a pairwise judge, and how the verifier reads GSM8K.

Prints: (1) the verifier's accuracy on GSM8K's own reference solutions (each should match itself);
(2) for N GSM8K problems, the 135M judge comparing the reference solution with the same solution
whose final number is off by one: mean win probability of the right one, and position consistency.

    HF_HUB_OFFLINE=1 python -m benchmarks.pairwise_judge [N]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from critics.pairwise import compare, position_consistency
from critics.verifier import check, reference_number
from generators.pool import load_prompts
from loop.models import SMOLLM2, resolve_model
from loop.policy import Policy
from loop.stats import estimate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"
QUESTION = "Which response solves the problem correctly?"


def solution(reference: str, answer: str) -> str:
    """GSM8K's worked solution, calculator marks removed, ending with "The answer is N."."""
    working = re.sub(r"<<[^>]*>>", "", reference.rpartition("####")[0]).strip()
    return f"{working}\nThe answer is {answer}."


def main(n: int) -> None:
    pool = load_prompts(DATA, "seed", "benchmark", "question", "answer")
    own = [check(p.reference, p.reference, "numeric")[0] for p in pool]
    print(f"verifier | references matching themselves {sum(own)}/{len(own)}")

    policy = Policy(resolve_model(SMOLLM2), "bfloat16")
    triples = []
    for p in pool[:n]:
        right = reference_number(p.reference) or "0"
        wrong = str(int(float(right)) + 1)
        triples.append((p.instruction, solution(p.reference, right), solution(p.reference, wrong)))
    results = compare(policy, QUESTION, triples)
    win = estimate([r.win for r in results])
    # P("A") over A and B, whichever response stands first: 0.5 for a judge with no position bias
    p_a = estimate([(r.a_first + 1 - r.a_second) / 2 for r in results])
    print(
        f"pairwise judge | {n} pairs | right solution wins {win['mean']:.3f} "
        f"[{win['lo']:.3f}, {win['hi']:.3f}] | position consistency "
        f"{position_consistency(results):.2f} | P(A) {p_a['mean']:.3f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
