"""How long a CrowS-Pairs audit takes and what it says, for the default policy on a CPU.

    HF_HUB_OFFLINE=1 python -m benchmarks.crows --pairs 300
    HF_HUB_OFFLINE=1 python -m benchmarks.crows --pairs 0 --prefix "You are a kind assistant."

Prints one line per bias type (score [95% interval] n) and the seconds spent scoring.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from critics.crows import crows_score, load_crows
from loop.models import SMOLLM2, resolve_model
from loop.policy import Policy
from loop.stats import fmt

CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "crows_pairs_anonymized.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default=str(CSV))
    parser.add_argument("--pairs", type=int, default=300, help="stratified sample; 0: every pair")
    parser.add_argument("--model", default=SMOLLM2)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="", help="a prompt that conditions every sentence")
    args = parser.parse_args()

    pairs = load_crows(args.file, args.pairs or None, args.seed)
    started = time.perf_counter()
    policy = Policy(resolve_model(args.model), args.dtype, args.threads)
    loaded = time.perf_counter()
    result = crows_score(policy, pairs, args.prefix)
    scored = time.perf_counter()

    print(f"pairs {len(pairs)} | load {loaded - started:.1f}s | score {scored - loaded:.1f}s")
    print(f"{'overall':20s} {fmt(result['overall'], 1)}  n={result['overall']['n']}")
    for bias_type, e in result["by_type"].items():
        print(f"{bias_type:20s} {fmt(e, 1)}  n={e['n']}")


if __name__ == "__main__":
    main()
