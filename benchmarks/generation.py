"""Generation throughput: the generator actors against plain batched `model.generate`, and each
lever between them, on the same prompts, model and sampling settings, in one run.

    HF_HUB_OFFLINE=1 python benchmarks/generation.py                  # every case, ~45 minutes
    HF_HUB_OFFLINE=1 python benchmarks/generation.py --cases generate-sorted,decode-64,actors

Prompts are the first `--prompts` real instructions of the Self-Instruct seed tasks and the
user-oriented dev split (../shared/data), each asked with the persona's system prompt, as the
generators ask them. Sampling (temperature, top_p, max_new_tokens) comes from config.toml's
[generate]. Each case runs in its own process so that its thread count is its own; the model
load and one warm-up batch are not timed. Tokens are the generated tokens of every answer up to
its end-of-turn token. "slots", for the batch-at-a-time cases, is the share of the batch x steps
positions that held such a token: what refilling finished rows (continuous batching, as the
decode loop does) could at most win back.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
BASELINE = "generate"
MAX_PROMPT_TOKENS = 256
CASES = {
    BASELINE: "transformers generate, batch 64, 2 threads, prompts in file order",
    "generate-sorted": "  + prompts in length order",
    "generate-static-compiled": "  + static cache and torch.compile",
    "continuous": "transformers continuous batching (generate_batch), 2 threads",
    "decode-64": "selfloop decode loop, 64 rows refilled as they finish, 2 threads",
    "decode-128": "  + 128 rows",
    "decode-64-1thread": "  64 rows, one thread (one generator actor's share)",
    "actors": "the generator actors through Ray (config's [actors]), batch --batch",
}


def conversations(n: int) -> list[list[dict[str, str]]]:
    """The first `n` instructions, asked with the persona's system prompt, that fit in
    MAX_PROMPT_TOKENS: a round's prompts are instructions of one to three sentences, and the
    few documents the user-oriented split carries (up to 1,392 tokens) would make every case a
    measure of prefilling the batch they land in."""
    from transformers import AutoTokenizer

    from generators.pool import load_prompts
    from generators.sampler import persona_conversation
    from loop.config import load_config

    system = load_config(REPO / "config.toml").persona.system_prompt
    prompts = load_prompts(DATA / "self_instruct_seed_tasks.jsonl", "self-instruct", "bench")
    prompts += load_prompts(DATA / "user_oriented_instructions_dev.jsonl", "user", "bench")
    tok = AutoTokenizer.from_pretrained(model_path())
    convs = [persona_conversation(p.instruction, system) for p in prompts]
    convs = [c for c in convs if prompt_tokens(tok, c) <= MAX_PROMPT_TOKENS]
    if n > len(convs):
        sys.exit(f"--prompts {n}: the two files hold {len(convs)} instructions that fit")
    return convs[:n]


def prompt_tokens(tok, conversation: list[dict[str, str]]) -> int:  # noqa: ANN001
    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def sampling() -> dict[str, float]:
    from loop.config import load_config

    g = load_config(REPO / "config.toml").generate
    return {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p}


# ---- one case, in its own process -------------------------------------------------------------

# A case's generate function: a batch of conversations -> (answer lengths in tokens, decode steps)
Generate = Callable[[list], tuple[list[int], int]]


def run_transformers(case: str, convs: list, s: dict) -> dict:
    """transformers' own generation paths, as a plain script would call them."""
    import torch

    from loop.policy import Policy

    policy = Policy(model_path(), "bfloat16", threads=2)
    tok, model = policy.tokenizer, policy.model
    model.set_attn_implementation("sdpa")  # transformers' own attention, not the decode loop's
    if case != BASELINE:
        convs = sorted(convs, key=lambda c: len(str(c)))
    if case == "continuous":
        return run_continuous(policy, convs, s)
    kw = {"do_sample": True, "temperature": s["temperature"], "top_p": s["top_p"]}
    kw |= {"max_new_tokens": s["max_new_tokens"], "pad_token_id": tok.pad_token_id}
    width = None
    if case == "generate-static-compiled":
        from transformers import CompileConfig

        compile_config = CompileConfig(dynamic=False, mode="default")
        compile_config._compile_all_devices = True  # transformers compiles on GPUs only otherwise
        kw |= {"cache_implementation": "static", "compile_config": compile_config}
        width = max(len(policy._encode([c])["input_ids"][0]) for c in convs)

    def generate(piece: list) -> tuple[list[int], int]:
        enc = policy._encode(piece)
        if width:  # one compiled shape for every batch
            ids = enc["input_ids"].tolist()
            enc = tok.pad({"input_ids": ids}, padding="max_length", max_length=width,
                          return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            out = model.generate(**enc, **kw)[:, enc["input_ids"].shape[1] :]
        return [answer_length(row, policy._stop_ids) for row in out.tolist()], out.shape[1]

    return timed(generate, convs, 64, warm_batch=64 if width else 4)


def run_continuous(policy, convs: list, s: dict) -> dict:  # noqa: ANN001
    from transformers import GenerationConfig

    tok = policy.tokenizer
    ids = [policy._ids(tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True))
           for c in convs]  # fmt: skip
    config = GenerationConfig(
        do_sample=True, temperature=s["temperature"], top_p=s["top_p"],
        max_new_tokens=s["max_new_tokens"], eos_token_id=sorted(policy._stop_ids),
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    policy.model.generate_batch(inputs=ids[:4], generation_config=config)  # warm-up
    started = time.perf_counter()
    out = policy.model.generate_batch(inputs=ids, generation_config=config)
    seconds = time.perf_counter() - started
    lengths = [answer_length(o.generated_tokens, policy._stop_ids) for o in out.values()]
    return {"tokens": sum(lengths), "seconds": seconds}


def run_decode(case: str, convs: list, s: dict) -> dict:
    """selfloop's Policy.generate over every prompt at once: loop.decode's stream refills a
    finished row with the next prompt, so batches are rows, not slices of the prompts."""
    from loop.policy import Policy

    threads = 1 if case.endswith("1thread") else 2
    rows = 128 if case == "decode-128" else 64
    policy = Policy(model_path(), "bfloat16", threads)
    convs = sorted(convs, key=lambda c: len(str(c)))
    temperature, top_p, new = s["temperature"], s["top_p"], s["max_new_tokens"]
    started = time.perf_counter()
    policy.generate(convs[:4], new, temperature, top_p, seed=0, batch_size=4)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    gens = policy.generate(convs, new, temperature, top_p, seed=0, batch_size=rows)
    seconds = time.perf_counter() - started
    return {"tokens": sum(g.tokens for g in gens), "seconds": seconds, "warm": warm}


def run_actors(convs: list, s: dict, batch: int) -> dict:
    """The generator actors as a round launches them, the prompts split evenly among them."""
    import ray

    from generators.pool import Prompt
    from generators.sampler import Sampling
    from loop.actors import GeneratorActor, quiet_worker
    from loop.config import load_config
    from loop.models import ModelPaths, resolve_model

    cfg = load_config(REPO / "config.toml")
    a, m = cfg.actors, cfg.model
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": quiet_worker})  # fmt: skip
    paths = ModelPaths(model_path(), resolve_model(m.embedder), {})
    cls = ray.remote(GeneratorActor).options(num_cpus=a.generator_cpus)
    actors = [cls.remote(paths, m, a.generator_threads) for _ in range(a.generators)]
    system = cfg.persona.system_prompt
    prompts = [Prompt(f"p{i}", c[-1]["content"], "bench") for i, c in enumerate(convs)]
    sample = Sampling(s["max_new_tokens"], s["temperature"], s["top_p"], batch)

    def respond(piece: list) -> list:
        shares = [piece[i :: len(actors)] for i in range(len(actors))]
        calls = [actor.respond.remote(share, system, 1, sample, 0, None, 1, False)
                 for actor, share in zip(actors, shares, strict=True) if share]  # fmt: skip
        return [c for part in ray.get(calls) for c in part]

    respond(prompts[: 2 * len(actors)])  # every actor loads its model and warms up
    started = time.perf_counter()
    candidates = respond(prompts)
    seconds = time.perf_counter() - started
    ray.shutdown()
    return {"tokens": sum(c.tokens for c in candidates), "seconds": seconds}


def model_path() -> str:
    from loop.models import SMOLLM2, resolve_model

    return resolve_model(SMOLLM2)


def answer_length(ids: list[int], stops: set[int]) -> int:
    return next((k for k, t in enumerate(ids) if t in stops), len(ids))


def timed(generate: Generate, convs: list, batch: int, warm_batch: int) -> dict:
    """Tokens, seconds and slot use of `generate` over `convs` in batches of `batch`, after
    one warm-up batch of `warm_batch` (a compiled case compiles its batch shape there)."""
    started = time.perf_counter()
    generate(convs[:warm_batch])
    warm = time.perf_counter() - started
    tokens = slots = 0
    started = time.perf_counter()
    for first in range(0, len(convs), batch):
        lengths, steps = generate(convs[first : first + batch])
        tokens += sum(lengths)
        slots += len(lengths) * steps
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "slots": tokens / max(slots, 1), "warm": warm}


def one(case: str, n: int, batch: int) -> dict:
    convs, s = conversations(n), sampling()
    if case.startswith("decode"):
        return run_decode(case, convs, s)
    if case == "actors":
        return run_actors(convs, s, batch)
    return run_transformers(case, convs, s)


# ---- the table --------------------------------------------------------------------------------


def measure(case: str, n: int, batch: int, limit: float) -> dict:
    """Run one case in a fresh process; its last stdout line is its JSON result."""
    cmd = [sys.executable, __file__, "--one", case, "--prompts", str(n), "--batch", str(batch)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {limit:.0f} s"}
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def row(case: str, r: dict, base: float | None) -> str:
    if "error" in r:
        return f"{case:26s} | failed: {r['error']}"
    rate = r["tokens"] / r["seconds"]
    ratio = f"{rate / base:5.2f}x" if base else "    -"
    slots = f"{r['slots']:.0%}" if r.get("slots") is not None else "  -"
    warm = f" | warm-up {r['warm']:.0f} s" if r.get("warm", 0) > 10 else ""
    return (
        f"{case:26s} | {r['tokens']:6d} tokens | {r['seconds']:6.1f} s | {rate:6.1f} tokens/s | "
        f"{ratio} | slots {slots}{warm} | {CASES[case].strip()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES)
    )
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64, help="generate.batch_size of the actors")
    ap.add_argument("--limit", type=float, default=900, help="seconds one case may take")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.prompts, args.batch)))
        return

    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f"unknown case {unknown[0]!r}: choose from {', '.join(CASES)}")
    s = sampling()
    print(
        f"{args.prompts} prompts of at most {MAX_PROMPT_TOKENS} tokens | "
        f"temperature {s['temperature']} | top_p {s['top_p']} | "
        f"max_new_tokens {s['max_new_tokens']} | bfloat16 | load {os.getloadavg()[0]:.1f}"
    )
    base = None
    for case in cases:
        r = measure(case, args.prompts, args.batch, args.limit)
        if case == BASELINE and "error" not in r:
            base = r["tokens"] / r["seconds"]
        print(row(case, r, base), flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f} | target: actors >= 3x {BASELINE}")


if __name__ == "__main__":
    main()
