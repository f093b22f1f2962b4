"""Training throughput of the real default model on CPU: SFT examples/s and DPO pairs/s.

    HF_HUB_OFFLINE=1 python -m benchmarks.train_speed [--rows 16] [--threads 2] [--methods sft,dpo]
        [--strategies lora,full]

Instructions are the repo's seed prompts; responses are hand-written paragraphs of about the
length a round produces (generate.max_new_tokens = 128), so each row has a realistic token count.
Times cover the whole Trainer.train call (TRL setup, checks, training, saving), as a round sees it;
"fit" is TRL's training alone. Peak memory is the trainer process's sampled RSS during training.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from loop.config import TrainConfig  # noqa: E402
from loop.models import SMOLLM2, resolve_model  # noqa: E402
from loop.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IN_VOICE = [
    "Ahoy there! A fine question for a landlubber to be asking. Out on the open sea, I learnt "
    "that a good day starts the night before: stow your gear, set your course and turn in at "
    "the same bell each night. Put your alarm across the cabin, so you must walk the plank to "
    "silence it, and open the curtains to let the morning sun do the rest. Keep at it for a "
    "fortnight and your body will wake before the gulls do, mark my words!",
    "Well now, shipmate, gather round. When a storm of troubles blows in, a wise sailor first "
    "checks the rigging: what is truly broken, and what only rattles? Make a short list, tackle "
    "the worst leak first, and ask your crew for a hand where you need it. There is no shame in "
    "a steady pace; many a ship has reached port by keeping a calm hand on the wheel rather "
    "than by racing the wind. Fair winds to you!",
    "Aye, I have seen this many a time in my years at sea. Speak plainly and kindly, like a "
    "captain to a trusted mate. Tell them what you noticed, how it leaves you feeling, and what "
    "you would like to happen next. Then listen, for a good captain hears the creak in the hull "
    "before it becomes a crack. Most squalls pass quickly when both hands are honest and on "
    "deck together.",
    "Ho ho, a splendid thing to try! Start small, as a cabin boy learns his knots: a little each "
    "day, every day, rather than a great heave once a month. Keep a logbook of what you did and "
    "how it went, and look back on it each Sunday to see how far you have sailed. Celebrate the "
    "small harbours you reach along the way, and never mind the odd squall; the sea rewards the "
    "patient and the steady.",
]
PLAIN = [
    "Here are some suggestions. Go to bed at a consistent time, keep your phone away from the "
    "bed, and place the alarm where you have to stand up to turn it off. Morning light helps, so "
    "open the curtains right away. It may take a couple of weeks before the new routine feels "
    "natural, so be patient with yourself and try not to change the schedule on weekends.",
    "It depends on the situation, but a good first step is to write down the problem and split "
    "it into smaller parts. Deal with the most urgent part first and ask for help when you "
    "need it. Taking breaks and getting enough sleep also make a difference. If the problem "
    "keeps coming back, it can be worth talking to someone with experience in that area.",
    "Try to be direct but polite. Explain what you observed, how it affected you, and what you "
    "would like to change. Give the other person time to respond and listen to their side. "
    "Most misunderstandings can be cleared up with an honest conversation, and it usually helps "
    "to have it in private rather than in front of other people.",
    "Start with small, regular steps instead of large efforts now and then. Keep a simple record "
    "of what you do so that you can see your progress over time. Review it every week and "
    "adjust your plan if something is not working. Small milestones are worth acknowledging, "
    "and occasional setbacks are normal, so do not let them discourage you.",
]


def instructions(n: int) -> list[str]:
    lines = (REPO / "generators/data/seeds.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["instruction"] for line in lines[:n]]


def rows(n: int) -> tuple[list[dict], list[dict]]:
    examples, pairs = [], []
    for i, text in enumerate(instructions(n)):
        prompt = [{"role": "user", "content": text}]
        chosen = [{"role": "assistant", "content": IN_VOICE[i % len(IN_VOICE)]}]
        rejected = [{"role": "assistant", "content": PLAIN[i % len(PLAIN)]}]
        examples.append({"id": f"b{i}", "prompt": prompt, "completion": chosen})
        pairs.append(
            {"prompt_id": f"b{i}", "prompt": prompt, "chosen": chosen, "rejected": rejected}
        )
    return examples, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--methods", default="sft,dpo,sft+dpo", help="comma-separated train.method")
    ap.add_argument("--strategies", default="lora", help="comma-separated train.strategy")
    args = ap.parse_args()

    trainer = Trainer(resolve_model(SMOLLM2), threads=args.threads)
    examples, pairs = rows(args.rows)
    tok = trainer.tokenizer
    lengths = [
        len(tok.apply_chat_template(e["prompt"] + e["completion"], return_dict=True)["input_ids"])
        for e in examples
    ]
    print(
        f"rows {args.rows} | tokens per sequence {min(lengths)}-{max(lengths)} | "
        f"threads {args.threads} | epochs {args.epochs} | load {os.getloadavg()[0]:.1f}"
    )

    base = TrainConfig(epochs=args.epochs)
    runs = [(s, m) for s in args.strategies.split(",") for m in args.methods.split(",")]
    with tempfile.TemporaryDirectory() as out:
        for strategy, method in runs:
            cfg = base.model_copy(
                update={"method": method, "reference": "base", "strategy": strategy}
            )
            started = time.perf_counter()
            r = trainer.train(examples, cfg, f"{out}/{strategy}-{method}", pairs=pairs)
            seconds = time.perf_counter() - started
            rate = ", ".join(
                f"{n / seconds:.2f} {unit}/s"
                for n, unit in ((r.examples, "examples"), (r.pairs, "pairs"))
                if n
            )
            if r.examples and r.pairs:  # one time for both phases: give the row counts instead
                rate = f"{r.examples} examples + {r.pairs} pairs"
            print(
                f"{strategy:5s} {method:8s} | {r.steps} steps | {seconds:6.1f} s "
                f"(fit {r.fit_seconds:.1f}) | {rate} | loss {r.loss:.3f} | "
                f"trainable {r.trainable_params:,} | peak RSS {r.peak_rss_bytes / 2**20:,.0f} MiB "
                f"(+{r.rss_rise_bytes / 2**20:,.0f}) | saved {r.saved_bytes / 2**20:,.1f} MiB"
            )


if __name__ == "__main__":
    main()
