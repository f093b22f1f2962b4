"""`selfloop`: run, resume, inspect and show self-training runs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from loop.errors import RunStoreError, UserError
from loop.stop import StopRequested

log = logging.getLogger("selfloop")


# ---- run and resume ---------------------------------------------------------------------


def _round_line(m: dict[str, Any], target: str) -> str:
    ev = m.get("eval", {})
    figures = " -> ".join(
        f"{arm} {_est(ev[arm][target])}"
        for arm in ("base", "prompt", "adapter")
        if target in ev.get(arm, {})
    )
    total = sum(m.get("seconds", {}).values())
    return (
        f"round {m['round']} | {m['status']} | {m['survivors']}/{m['candidates']} survivors | "
        f"{target} {figures} | {total:.0f}s | {m['reason']}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from loop.config import load_config, parse_override
    from loop.driver import default_run_dir, execute, load_inputs, prepare_new_run

    overrides = dict(parse_override(item) for item in args.set)
    if args.rounds is not None:
        overrides["run.rounds"] = args.rounds
    cfg = load_config(args.config, overrides)
    inputs = load_inputs(cfg, args.address)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg)
    store = prepare_new_run(cfg, run_dir, args.overwrite)
    log.info("run %s | %d rounds | policy %s", run_dir, cfg.run.rounds, cfg.model.policy)
    execute(
        store,
        cfg,
        inputs,
        cfg.run.rounds,
        not (args.quiet or args.json_logs),  # JSON lines on stderr: no bars among them
        lambda m: print(_round_line(m, cfg.eval.target), flush=True),
        address=args.address,
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from loop.driver import check_from_round, execute, first_open_round, load_inputs, open_run

    store, cfg = open_run(Path(args.run))
    inputs = load_inputs(cfg, args.address)
    rounds = args.rounds or cfg.run.rounds
    if args.from_round is not None:
        check_from_round(store, args.from_round)
        start = min(args.from_round, first_open_round(store))
    else:
        start = first_open_round(store)
    if start > rounds:
        print(f"{args.run}: all {rounds} rounds are complete; pass --rounds to add more")
        return 0
    log.info("resume %s | rounds %d..%d", args.run, start, rounds)
    execute(
        store,
        cfg,
        inputs,
        rounds,
        not (args.quiet or args.json_logs),  # JSON lines on stderr: no bars among them
        lambda m: print(_round_line(m, cfg.eval.target), flush=True),
        from_round=args.from_round,
        address=args.address,
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from loop.store import RunStore, write_json

    store = RunStore(args.run).require()
    pid, host = store.holder()
    if pid is None:
        raise RunStoreError(f"{store.root} is not running; nothing to stop")
    write_json(store.stop_request, {"requested_by": "selfloop stop"})
    print(f"asked process {pid} on {host} to stop after the stage in flight")
    return 0


# ---- inspect and show -------------------------------------------------------------------


_METRIC_KEYS = ("round", "status", "reason", "candidates", "survivors", "rejected_by", "scores")


def _rounds(store: Any, only: int | None) -> list[dict[str, Any]]:
    ks = store.completed_rounds()
    if only is not None:
        if only not in ks:
            raise RunStoreError(
                f"{store.root} has no completed round {only} (completed: {ks or 'none'})"
            )
        ks = [only]
    rows = [store.metrics(k) for k in ks]
    for k, m in zip(ks, rows, strict=True):
        missing = [key for key in _METRIC_KEYS if key not in m]
        if missing:
            raise RunStoreError(
                f"{store.round_dir(k) / 'metrics.json'} is damaged (no {', '.join(missing)}); "
                f"redo the round with `selfloop resume {store.root} --from-round {k}`"
            )
    return rows


def _in_flight(store: Any) -> str | None:
    done = set(store.completed_rounds())
    open_rounds = [k for k in store.rounds_on_disk() if k not in done]
    if not open_rounds:
        return None
    k = open_rounds[0]
    stages = sorted(p.stem for p in (store.round_dir(k) / "stages").glob("*.json"))
    return f"round {k} is incomplete (stages done: {', '.join(stages) or 'none'})"


def _est(value: Any, digits: int = 3) -> str:
    """An estimate as 'mean [lo, hi]'; a bare number as itself; '-' when not measured."""
    if isinstance(value, dict) and "mean" in value:
        m, lo, hi = value["mean"], value["lo"], value["hi"]
        return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return "-" if value is None else f"{value:.{digits}f}"


def _grid(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], target: str) -> str:
    """One line per round: selection counts, the target per arm, the gain and the judge's view."""
    head = ["round", "status", "cand", "surv", "rejected by", f"{target} adapter"]
    head += ["gain vs base", "gain vs prompt", "win vs base", "win vs prompt", "loops", "time s"]
    body = []
    for m in rows:
        ev = m.get("eval", {})
        gain, win = ev.get("gain", {}), ev.get("pairwise", {})
        rejected = " ".join(f"{k}:{v}" for k, v in m["rejected_by"].items() if v)
        body.append(
            [
                str(m["round"]),
                m["status"],
                str(m["candidates"]),
                str(m["survivors"]),
                rejected or "-",
                _est(ev.get("adapter", {}).get(target)),
                _est(gain.get("vs_base")),
                _est(gain.get("vs_prompt")),
                _est(win.get("vs_base", {}).get("win"), 2),
                _est(win.get("vs_prompt", {}).get("win"), 2),
                _est(ev.get("adapter", {}).get("degenerate"), 2),
                f"{sum(m.get('seconds', {}).values()):.0f}",
            ]
        )
    return _grid(head, body)


ARM_FIGURES = (
    ("persona", 3),
    ("quality", 3),
    ("accuracy", 3),
    ("degenerate", 2),
    ("perplexity", 2),
    ("mc_accuracy", 3),
    ("crows", 1),
    ("prompt_tokens", 1),
    ("tokens_per_answer", 1),
    ("seconds_per_request", 3),
)


def _arms_table(m: dict[str, Any]) -> str:
    """Every arm's figures for one round, each with its 95% interval."""
    ev = m.get("eval", {})
    arms = [a for a in ("base", "prompt", "adapter") if a in ev]
    names = [(n, d) for n, d in ARM_FIGURES if any(n in ev[a] for a in arms)]
    body = [[n] + [_est(ev[a].get(n), d) for a in arms] for n, d in names]
    return _grid(["figure", *arms], body)


def cmd_inspect(args: argparse.Namespace) -> int:
    from loop.driver import open_run

    store, cfg = open_run(Path(args.run))
    rows = _rounds(store, args.round)
    if args.json:
        print(
            json.dumps(
                {"run": str(store.root), "target": cfg.eval.target, "rounds": rows}, indent=2
            )
        )
        return 0
    print(f"run {store.root} | persona '{cfg.persona.name}' | target metric: {cfg.eval.target}")
    print(_table(rows, cfg.eval.target) if rows else "no completed rounds yet")
    for m in rows:
        print(f"\nround {m['round']}: {m['status']}: {m['reason']}")
        if m.get("eval", {}).get("adapter"):
            print(_arms_table(m))
    note = _in_flight(store)
    if note:
        print(note + f"; continue with `selfloop resume {store.root}`")
    return 0


def _show_changes(m: dict[str, Any]) -> None:
    """What the round's fine-tune changed: update norms by layer, drift from the base on the
    probe prompts, and the probes whose answers changed most."""
    ch = m.get("changes")
    if not ch:
        raise RunStoreError(f"round {m['round']} trained no adapter, so nothing changed")
    norm = ch["update_norm"]
    print(f"round {m['round']} | adapter update norm (sum over modules) {norm['sum']:.3f}")
    top = max(norm["layers"].values(), default=0.0) or 1.0
    for layer, value in norm["layers"].items():
        print(f"  {layer:<10} {value:8.4f} {'#' * round(30 * value / top)}")
    print(f"KL(adapter || base) per probe token: {_est(ch['kl'], 4)}")
    print(f"answer change (1 - ROUGE-L vs the base's answer): {_est(ch['answer_change'])}")
    for c in ch["changed"]:
        print(f"\n  change {c['change']:.2f} | {c.get('probe', c['index'])}")
        print(textwrap.indent(textwrap.fill("base:    " + c["base"], 100), "    "))
        print(textwrap.indent(textwrap.fill("adapter: " + c["adapter"], 100), "    "))


def _show_training_set(store: Any, k: int, limit: int) -> int:
    """The round's SFT training set, each example marked real or synthetic."""
    folder = store.dataset(k, "train")
    if not folder.is_dir():
        folder = store.dataset(k, "survivors")  # no real data mixed in: the survivors
    if not folder.is_dir():
        raise RunStoreError(f"{store.root} has no training set for round {k}")
    rows = store.load_rows(folder)
    real = sum(r["source"] == "real" for r in rows)
    print(f"round {k} | training set: {len(rows) - real} synthetic + {real} real examples")
    for r in rows[:limit]:
        kind = "real" if r["source"] == "real" else f"synthetic ({r['source']})"
        print(f"\n[{r['id']}] {kind}")
        print(textwrap.indent(textwrap.fill("Q: " + r["instruction"], 100), "  "))
        print(textwrap.indent(textwrap.fill("A: " + r["response"], 100), "  "))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from loop.driver import open_run

    store, cfg = open_run(Path(args.run))
    if args.changes:
        _show_changes(_rounds(store, args.round)[0])
        return 0
    if args.train:
        return _show_training_set(store, args.round, args.limit)
    folder = store.dataset(args.round, "candidates")
    if not folder.is_dir():
        raise RunStoreError(f"{store.root} has no critiqued candidates for round {args.round}")
    rows = store.load_rows(folder)
    if args.rejected:
        rows = [r for r in rows if not r["survivor"]]
        if args.critic:
            rows = [r for r in rows if r["rejected_by"] == args.critic]
    else:
        rows = [r for r in rows if r["survivor"]]
    if args.critic and not args.rejected:
        raise UserError("--critic filters rejected candidates: add --rejected")
    if args.critic and args.critic not in [*cfg.critics, "budget"]:
        raise RunStoreError(
            f"--critic {args.critic}: this run's critics are {', '.join(cfg.critics)} "
            "(and 'budget')"
        )
    rows.sort(key=lambda r: -r["combined_score"])
    critics = [name for name in cfg.critics if f"{name}_score" in (rows[0] if rows else {})]
    kind = "rejected" if args.rejected else "survivors"
    by = f" (by {args.critic})" if args.critic else ""
    shown = f", showing the best {args.limit} (--limit)" if len(rows) > args.limit else ""
    print(f"round {args.round} | {len(rows)} {kind}{by}{shown}")
    for r in rows[: args.limit]:
        verdict = f"rejected by {r['rejected_by']}" if r["rejected_by"] else "survivor"
        print(f"\n[{r['id']}] {verdict} | combined {r['combined_score']:.3f} | {r['source']}")
        print(textwrap.indent(textwrap.fill("Q: " + r["instruction"], 100), "  "))
        print(textwrap.indent(textwrap.fill("A: " + r["response"], 100), "  "))
        for name in critics:
            mark = "pass" if r[f"{name}_pass"] else "FAIL"
            print(f"    {name:<10} {r[f'{name}_score']:.3f} {mark}  {r[f'{name}_reason']}")
    return 0


# ---- use the result ---------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from loop.report import write_report

    target = Path(args.out) if args.out else None
    if target is not None and (target.is_dir() or not target.parent.is_dir()):
        where = "is a folder" if target.is_dir() else "is not in an existing folder"
        raise UserError(f"--out {target} {where}: name an HTML file to write")
    out = write_report(Path(args.run), target)
    print(f"wrote {out}")
    return 0


def _chat_turns(answer: Any, message: str | None) -> None:
    """One reply to --message, or a prompt loop on stdin until an empty line or EOF."""
    if message is not None:
        print(answer([{"role": "user", "content": message}]))
        return
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        text = answer(history)
        history.append({"role": "assistant", "content": text})
        print(text, flush=True)


def cmd_chat(args: argparse.Namespace) -> int:
    from loop import serve

    kw = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
    if len(args.run) > 1 or args.persona:
        if args.round is not None:
            raise UserError("--round picks one run's round: with several runs each serves its best")
        model = serve.PersonaModel(serve.persona_adapters([Path(r) for r in args.run]))
        persona = args.persona or model.personas[0]
        log.info("personas %s | talking to %s", ", ".join(model.personas), persona)
        _chat_turns(lambda h: model.reply(persona, h, **kw), args.message)
        return 0
    ra = serve.run_adapter(Path(args.run[0]), args.round)
    log.info("chat %s | round %d adapter on %s", ra.run, ra.round, ra.base)
    policy = serve.load_policy(ra)
    _chat_turns(lambda h: serve.reply(policy, h, **kw), args.message)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from loop import serve

    ra = serve.run_adapter(Path(args.run), args.round)
    out = serve.export_merged(ra, Path(args.out))
    print(f"wrote {out}: base {ra.base} + round {ra.round} adapter, merged")
    return 0


# ---- audit ------------------------------------------------------------------------------


def _audit_table(result: dict[str, Any]) -> str:
    """Base, model and paired change per measure and category; '*' marks a significant move."""
    head = ["measure", "category", "base", "model", "change (paired)", "moved"]
    body = [
        [
            r["measure"],
            r["category"],
            _est(r["base"], 2),
            _est(r["model"], 2),
            _est(r["change"], 2),
            "*" if r["significant"] else "",
        ]
        for r in result["rows"]
    ]
    return _grid(head, body)


def cmd_audit(args: argparse.Namespace) -> int:
    from loop.audit import audit, default_crows_file

    crows = Path(args.crows) if args.crows else default_crows_file()
    if not crows.is_file():
        raise UserError(f"--crows {crows}: file not found")
    result = audit(args.model, args.base, crows, args.max_pairs or None)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"audit {result['kind']} {result['model']} against {result['base']} | "
        f"{result['pairs']} CrowS pairs | {result['probes']} swap probes"
    )
    print("crows: % of pairs preferring the stereotype (50 = none); swap_gap: nats between a")
    print("sentence and its group-swapped twin; change = model - base per item, 95% interval")
    print(_audit_table(result))
    moved = ", ".join(result["significant"]) or "none"
    print(f"moved significantly (paired interval excludes 0): {moved}")
    return 0


# ---- showdown ---------------------------------------------------------------------------


def _count(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _showdown_table(rows: list[dict[str, Any]], target: str) -> str:
    """One line per strategy: what it bought, what it kept, and what it cost."""
    head = ["strategy", "round", target, "win vs base", "perplexity", "mc acc", "crows"]
    head += ["trainable", "peak MB", "train s", "saved MB", "prompt tok", "s/request"]
    body = []
    for r in rows:
        t = r["train"]
        body.append(
            [
                r["strategy"],
                f"{r['round']} ({r['round_note']})",
                _est(r["target"]),
                _est(r["win_vs_base"], 2),
                _est(r["perplexity"], 2),
                _est(r["mc_accuracy"]),
                _est(r["crows"], 1),
                _count(t["trainable_params"]),
                _count(t["peak_memory_mb"]),
                _count(t["seconds"]),
                _count(t["saved_mb"], 1),
                _est(r["prompt_tokens"], 1),
                _est(r["seconds_per_request"]),
            ]
        )
    return _grid(head, body)


def cmd_showdown(args: argparse.Namespace) -> int:
    from loop.config import load_config
    from loop.driver import execute, load_inputs, prepare_new_run
    from loop.showdown import check_runnable, overrides, parse_strategies, plan, rows

    strategies = parse_strategies(args.strategies)
    check_runnable(strategies)
    first = load_config(args.config)
    runs_dir = Path(args.runs_dir) if args.runs_dir else Path(first.run.runs_dir)
    entries = plan(strategies, runs_dir, first.run.name, args.rounds)
    # Every config, input and folder is checked before the first run starts.
    runs = [e for e in entries if e.rounds]
    configs = [load_config(args.config, overrides(e)) for e in runs]
    inputs = [load_inputs(cfg) for cfg in configs]
    taken = [str(e.run_dir) for e in runs if e.run_dir.exists() and not args.overwrite]
    if taken:
        raise RunStoreError(f"{', '.join(taken)} already exist; pass --overwrite to replace them")
    for i, (e, cfg, inp) in enumerate(zip(runs, configs, inputs, strict=True)):
        store = prepare_new_run(cfg, e.run_dir, args.overwrite)
        log.info("showdown | %s | %s | %d rounds", e.strategy, e.run_dir, e.rounds)
        try:
            execute(store, cfg, inp, e.rounds, not args.quiet)
        except StopRequested:
            later = ", ".join(r.strategy for r in runs[i + 1 :]) or "none"
            log.warning("showdown stopped during %s; strategies not run: %s", e.strategy, later)
            raise
    print(f"showdown {args.config} | target metric: {first.eval.target} | 95% intervals")
    print(_showdown_table(rows(entries, first.eval.target), first.eval.target))
    return 0


# ---- parser -----------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _address_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help="join this Ray cluster ('auto' or HOST:PORT) instead of starting one on this "
        "machine; the cluster is left running",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfloop", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="DEBUG logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a new run")
    run.add_argument("config", nargs="?", default="config.toml")
    run.add_argument("--rounds", type=positive, help="number of rounds (default: run.rounds)")
    run.add_argument("--run-dir", help="run folder (default: run.runs_dir/run.name)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    run.add_argument("--quiet", action="store_true", help="no progress bars, no INFO logs")
    run.add_argument(
        "--json", dest="json_logs", action="store_true", help="logs as JSON lines on stderr"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set generate.seed_file=my.jsonl (repeatable)",
    )
    _address_option(run)
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", help="continue a run, or branch it from an earlier round")
    resume.add_argument("run")
    resume.add_argument(
        "--from-round", type=int, help="restart from round K; later rounds go aside"
    )
    resume.add_argument(
        "--rounds", type=positive, help="total rounds to reach (default: the config's)"
    )
    resume.add_argument("--quiet", action="store_true", help="no progress bars, no INFO logs")
    resume.add_argument(
        "--json", dest="json_logs", action="store_true", help="logs as JSON lines on stderr"
    )
    _address_option(resume)
    resume.set_defaults(func=cmd_resume)

    stop = sub.add_parser("stop", help="ask a running loop to stop after the stage in flight")
    stop.add_argument("run")
    stop.set_defaults(func=cmd_stop)

    inspect = sub.add_parser("inspect", help="a table of a run's rounds")
    inspect.add_argument("run")
    inspect.add_argument("--round", type=int)
    inspect.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    inspect.set_defaults(func=cmd_inspect)

    show = sub.add_parser("show", help="a round's examples with their scores and reasons")
    show.add_argument("run")
    show.add_argument("--round", type=int, required=True)
    show.add_argument("--rejected", action="store_true", help="show rejected candidates")
    show.add_argument("--critic", help="with --rejected: only those this critic rejected")
    show.add_argument("--limit", type=positive, default=10)
    show.add_argument(
        "--train", action="store_true", help="the training set, real and synthetic examples marked"
    )
    show.add_argument(
        "--changes",
        action="store_true",
        help="what the adapter changed: update norms, KL from the base, changed answers",
    )
    show.set_defaults(func=cmd_show)

    report = sub.add_parser("report", help="one self-contained HTML page about a run")
    report.add_argument("run")
    report.add_argument("--out", help="HTML file to write (default: RUN/report.html)")
    report.set_defaults(func=cmd_report)

    chat = sub.add_parser("chat", help="talk to base + a round's adapter (no system prompt)")
    chat.add_argument("run", nargs="+", help="a run; several runs serve their personas together")
    chat.add_argument("--round", type=positive, help="round K's adapter (default: the best)")
    chat.add_argument("--persona", help="with several runs: whose adapter answers")
    chat.add_argument("--message", help="answer this once and exit (default: prompt on stdin)")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    chat.add_argument("--max-new-tokens", type=positive, default=256)
    chat.set_defaults(func=cmd_chat)

    export = sub.add_parser("export", help="write base + a round's adapter as one merged model")
    export.add_argument("run")
    export.add_argument("--round", type=positive, help="round K's adapter (default: the best)")
    export.add_argument("--out", required=True, help="new folder for the merged model")
    export.set_defaults(func=cmd_export)

    audit = sub.add_parser("audit", help="bias of an adapter or model against its base")
    audit.add_argument("model", help="PEFT adapter folder, model folder or hub id")
    audit.add_argument("--base", required=True, help="base model: embedded name, hub id, folder")
    audit.add_argument(
        "--crows", help="CrowS-Pairs CSV (default: ../shared/data/crows_pairs_anonymized.csv)"
    )
    audit.add_argument(
        "--max-pairs", type=positive, help="a stratified sample of this many pairs (default: all)"
    )
    audit.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    audit.set_defaults(func=cmd_audit)

    showdown = sub.add_parser("showdown", help="the same loop once per training strategy")
    showdown.add_argument("config", nargs="?", default="config.toml")
    showdown.add_argument(
        "--strategies", required=True, help="comma-separated: prompt, lora, full, qlora"
    )
    showdown.add_argument("--rounds", type=positive, required=True, help="rounds per strategy")
    showdown.add_argument("--runs-dir", help="where the runs go (default: run.runs_dir)")
    showdown.add_argument("--overwrite", action="store_true", help="replace existing run folders")
    showdown.add_argument("--quiet", action="store_true", help="no progress bars")
    showdown.set_defaults(func=cmd_showdown)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from loop import logs

    logs.configure(args.verbose, getattr(args, "quiet", False), getattr(args, "json_logs", False))
    for noisy in (
        "transformers",
        "datasets",
        "httpx",
        "filelock",
        "urllib3",
        "ray",
        "faiss",
        "absl",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        import datasets

        datasets.disable_progress_bars()
        return args.func(args)
    except UserError as err:
        print(f"selfloop: error: {err}", file=sys.stderr)
        return err.exit_code
    except StopRequested as stop:
        return stop.exit_code  # the driver has logged how to resume
    except KeyboardInterrupt:
        print("selfloop: interrupted; every finished stage is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
