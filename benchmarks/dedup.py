"""Cost of the dedup pass at 1k, 10k and 100k embeddings, flat and HNSW, and of embedding text.

Each case runs in its own subprocess so that its peak memory is its own. Vectors are random
384-dim unit vectors (like MiniLM's) plus planted near-duplicates of earlier candidates and of a
history of n / 10 earlier survivors, so both the keep and the reject branch run. The embedding
figure is MiniLM on 1,000 real instruction texts (self-instruct seeds and user-oriented
instructions, repeated to 1,000) read from ../shared/data.

    python benchmarks/dedup.py            # the whole table (several minutes on 2 cores)
    python benchmarks/dedup.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def peak_rss_mib() -> float:
    """VmHWM: the process's peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, DIM) candidates and (n // 10, DIM) history; 10% of the candidates are noisy copies
    of an earlier candidate, 2% of a history vector (cosine about 0.95 to their source)."""
    rng = np.random.default_rng(seed)
    history = rng.standard_normal((n // 10, DIM), dtype=np.float32)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    copies = rng.choice(np.arange(1, n), size=n // 10, replace=False)
    vectors[copies] = vectors[rng.integers(0, copies)] * 3.0 + vectors[copies]
    from_history = rng.choice(n, size=n // 50, replace=False)
    vectors[from_history] = history[rng.integers(0, len(history), len(from_history))] * 3.0
    vectors[from_history] += rng.standard_normal((len(from_history), DIM), dtype=np.float32)
    history /= np.linalg.norm(history, axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, history


def run_case(n: int, index: str, block_size: int) -> dict[str, float]:
    import faiss

    from critics.base import Candidate
    from critics.dedup import DedupCritic

    vectors, history = planted(n)
    candidates = [Candidate(f"c{i}", "p", "seed", "", "", 0, True) for i in range(n)]
    eligible = [True] * n
    history_ids = [f"h{i}" for i in range(len(history))]
    critic = DedupCritic("dedup", 0.92, index=index, block_size=block_size)
    before = peak_rss_mib()
    started = time.perf_counter()
    verdicts = critic.judge(candidates, vectors, list(range(n)), eligible, history, history_ids)
    seconds = time.perf_counter() - started
    after = peak_rss_mib()

    # The index as the pass left it: history plus every kept candidate.
    kept = [i for i, v in enumerate(verdicts) if v.passed]
    built = critic.new_index(DIM)
    built.add(history)
    built.add(vectors[kept])
    index_mib = faiss.serialize_index(built).nbytes / 2**20
    return {
        "seconds": seconds,
        "rejected": n - len(kept),
        "rss_growth_mib": after - before,
        "peak_rss_mib": after,
        "index_mib": index_mib,
    }


def instruction_texts(count: int) -> list[str]:
    texts = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions_dev.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            task = json.loads(line)
            texts.append(f"{task['instruction']}\n{task['instances'][0]['output']}")
    return [texts[i % len(texts)] for i in range(count)]


def run_embed(count: int) -> dict[str, float]:
    from critics.dedup import Embedder
    from loop.models import MINILM, resolve_model

    texts = instruction_texts(count)
    started = time.perf_counter()
    embedder = Embedder(resolve_model(MINILM))
    embedder.embed(texts[:8])  # first call pays one-off setup
    load = time.perf_counter() - started
    started = time.perf_counter()
    embedder.embed(texts)
    return {"seconds": time.perf_counter() - started, "load_seconds": load}


def in_subprocess(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares exponent b of y = a * x^b."""
    if len(xs) < 2:
        return math.nan
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def table(sizes: list[int], baseline_sizes: list[int]) -> None:
    cases = [(n, "flat", 1024) for n in sizes] + [(n, "hnsw", 1024) for n in sizes]
    cases += [(n, "flat", 1) for n in baseline_sizes]
    print(f"dedup pass: n candidates + n/10 history, dim {DIM}, threshold 0.92, block 1024")
    print("| n | index | block | seconds | rejected | RSS growth MiB | peak RSS MiB | index MiB |")
    print("|---|---|---|---|---|---|---|---|")
    timings: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for n, index, block in cases:
        r = in_subprocess("--case", str(n), index, str(block))
        timings.setdefault((index, block), []).append((n, r["seconds"]))
        print(
            f"| {n:,} | {index} | {block} | {r['seconds']:.2f} | {r['rejected']:,} "
            f"| {r['rss_growth_mib']:.1f} | {r['peak_rss_mib']:.0f} | {r['index_mib']:.1f} |",
            flush=True,
        )
    for (index, block), points in timings.items():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        print(f"time ~ n^{slope(xs, ys):.2f} for {index}, block {block}")
    r = in_subprocess("--embed", "1000")
    print(
        f"MiniLM embedding of 1,000 instruction texts: {r['seconds']:.2f} s "
        f"({1000 / r['seconds']:.0f} texts/s; model load {r['load_seconds']:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument(
        "--baseline-sizes",
        type=int,
        nargs="*",
        default=[1000, 10000],
        help="sizes also run one candidate at a time (block 1), the cost before blocking",
    )
    parser.add_argument("--case", nargs=3, metavar=("N", "INDEX", "BLOCK"), help=argparse.SUPPRESS)
    parser.add_argument("--embed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        n, index, block = args.case
        print(json.dumps(run_case(int(n), index, int(block))))
    elif args.embed:
        print(json.dumps(run_embed(args.embed)))
    else:
        table(args.sizes, args.baseline_sizes)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
