"""`selfloop report`: one self-contained HTML page about a run, read only from its run folder.

The page needs nothing but itself: charts are inline SVG (loop/svg.py), styles are inline, there
are no scripts and no external links, so it opens offline and can be mailed as one file. All text
from the run (instructions, responses, reasons, names) is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from loop import svg
from loop.store import RunStore, write_atomic
from loop.svg import Point, finite, fmt

ARMS = ("base", "prompt", "adapter")
EXAMPLES = 3  # best and worst candidates shown per round
# eval figures charted over rounds, with the digits their values are shown with
FIGURES = (
    ("persona", 3),
    ("quality", 3),
    ("accuracy", 3),
    ("degenerate", 2),
    ("perplexity", 1),
    ("mc_accuracy", 3),
    ("crows", 1),
    ("tokens_per_answer", 1),
)
DIVERSITY = ("distinct_1", "distinct_2", "mean_distance", "cluster_coverage", "novelty")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:15px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f4f4f4}td{white-space:nowrap}
.text{text-align:left;max-width:520px;white-space:pre-wrap}
.accepted{color:#1a7f37}.rejected{color:#b42318}.skipped{color:#8a6d00}
.charts{display:flex;flex-wrap:wrap;gap:14px}.chart{border:1px solid #eee;background:#fff}
.chart text{font-size:10px;fill:#333}.chart .head{font-size:12px;font-weight:600}
.chart .grid{stroke:#eee}.muted{color:#777}
.fail{color:#b42318}
"""


def write_report(run: Path, out: Path | None = None) -> Path:
    """Write the report of the run at `run` to `out` (default RUN/report.html); return the path."""
    from loop.driver import open_run

    store, cfg = open_run(Path(run))
    rounds = [store.metrics(k) for k in store.completed_rounds()]
    examples = {m["round"]: _candidates(store, m["round"]) for m in rounds}
    page = render(
        str(store.root),
        cfg.persona.name,
        cfg.eval.target,
        _critics(cfg.critics, rounds),
        rounds,
        examples,
    )
    out = Path(out) if out else store.root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page)
    return out


def _critics(configured: Sequence[str], rounds: Sequence[dict[str, Any]]) -> list[str]:
    """The critics that scored something: the configured ones in their order, then any the
    panel adds on its own (e.g. balance); a disabled critic has no scores and is left out."""
    scored = [c for m in rounds for c in m.get("scores", {})]
    return [c for c in dict.fromkeys([*configured, *scored]) if c in scored]


def _candidates(store: RunStore, k: int) -> list[dict[str, Any]]:
    folder = store.dataset(k, "candidates")
    if not folder.is_dir():
        return []
    drop = ("embedding",)  # vectors are large and not shown
    return [{c: v for c, v in r.items() if c not in drop} for r in store.load_rows(folder)]


def render(
    run: str,
    persona: str,
    target: str,
    critics: Sequence[str],
    rounds: Sequence[dict[str, Any]],
    examples: dict[int, list[dict[str, Any]]],
) -> str:
    """The whole page as a string, from a run's metrics and its critiqued candidates."""
    body = [
        f"<h1>selfloop run <code>{escape(run)}</code></h1>",
        f"<p>persona <b>{escape(persona)}</b> | target figure <b>{escape(target)}</b> | "
        f"{len(rounds)} completed round(s)</p>",
    ]
    if not rounds:
        body.append("<p>No completed rounds yet.</p>")
    else:
        body += [
            "<h2>Rounds</h2>",
            _round_table(rounds, target),
            "<h2>Evaluation over rounds</h2>",
            '<p class="muted">Held-out figures of each arm with 95% bootstrap intervals.</p>',
            _eval_charts(rounds),
            "<h2>Critic scores</h2>",
            _score_charts(rounds, critics, examples),
            "<h2>Funnel: candidates to survivors</h2>",
            _funnels(rounds),
            "<h2>Bias and diversity</h2>",
            _bias_and_diversity(rounds),
            "<h2>Best and worst candidates</h2>",
            *(_examples(m["round"], examples.get(m["round"], []), critics) for m in rounds),
        ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>selfloop report: {escape(run)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


# ---- pieces ------------------------------------------------------------------------------


def _point(est: Any, note: str = "") -> Point | None:
    """An estimate dict {mean, lo, hi, n} (or a bare number) as a chart point."""
    if isinstance(est, dict) and "mean" in est:
        value = finite(est["mean"])
        if value is None:
            return None
        n = f" (n {est['n']})" if "n" in est else ""
        return Point(value, finite(est.get("lo")), finite(est.get("hi")), n + note)
    value = finite(est)
    return None if value is None else Point(value, note=note)


def _est(est: Any, digits: int = 3) -> str:
    p = _point(est)
    if p is None:
        return "-"
    span = "" if p.lo is None else f" [{fmt(p.lo, digits)}, {fmt(p.hi, digits)}]"
    return f"{fmt(p.value, digits)}{span}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{th}</tr>{trs}</table>'


def _round_table(rounds: Sequence[dict[str, Any]], target: str) -> str:
    head = ["round", "status", "candidates", "survivors"]
    head += [f"{escape(target)} {arm}" for arm in ARMS]
    head += ["gain vs base", "gain vs prompt", "win vs base", "win vs prompt", "seconds", "reason"]
    rows = []
    for m in rounds:
        ev = m.get("eval", {})
        gain, win = ev.get("gain", {}), ev.get("pairwise", {})
        status = escape(str(m["status"]))
        rows.append(
            [
                str(m["round"]),
                f'<span class="{status}">{status}</span>',
                str(m["candidates"]),
                f'<span class="survivors">{m["survivors"]}</span>',
                *(_est(ev.get(arm, {}).get(target)) for arm in ARMS),
                _est(gain.get("vs_base")),
                _est(gain.get("vs_prompt")),
                _est(win.get("vs_base", {}).get("win"), 2),
                _est(win.get("vs_prompt", {}).get("win"), 2),
                f"{sum(m.get('seconds', {}).values()):.0f}",
                f'<span class="muted">{escape(str(m["reason"]))}</span>',
            ]
        )
    return _table(head, rows, "rounds")


def _labels(rounds: Sequence[dict[str, Any]]) -> list[str]:
    return [f"round {m['round']}" for m in rounds]


def _eval_charts(rounds: Sequence[dict[str, Any]]) -> str:
    charts = []
    for name, _ in FIGURES:
        series = {
            arm: [_point(m.get("eval", {}).get(arm, {}).get(name)) for m in rounds] for arm in ARMS
        }
        if any(p for pts in series.values() for p in pts):
            charts.append(svg.series_chart(name, _labels(rounds), series))
    return f'<div class="charts">{"".join(charts)}</div>' if charts else "<p>No evaluation.</p>"


def _score_charts(
    rounds: Sequence[dict[str, Any]], critics: Sequence[str], examples: dict[int, list[dict]]
) -> str:
    """Per critic, every candidate's score per round; filled dots are the survivors."""
    charts = []
    for name in critics:
        groups = [[r for r in examples.get(m["round"], []) if f"{name}_score" in r] for m in rounds]
        if not any(groups):
            continue
        scores = [[float(r[f"{name}_score"]) for r in g] for g in groups]
        charts.append(
            svg.strip_chart(
                f"{name} scores",
                _labels(rounds),
                scores,
                f"{name} score",
                lambda g, i, groups=groups: bool(groups[g][i]["survivor"]),
            )
        )
    rows = [
        [str(m["round"])] + [fmt(finite(m.get("scores", {}).get(c))) for c in critics]
        for m in rounds
    ]
    means = _table(["round", *(f"mean {escape(c)}" for c in critics)], rows, "scores")
    return f'<div class="charts">{"".join(charts)}</div>{means}'


def funnel_steps(funnel: dict[str, int]) -> list[tuple[str, int, int]]:
    """(step, candidates left after it, removed by it) from a round's ordered funnel, whose
    first entry counts the generated candidates and whose other entries count removals."""
    items = [(k, v) for k, v in funnel.items() if k != "survivors"]
    if not items:
        return []
    (first, total), *cuts = items
    steps, left = [(first, total, 0)], total
    for name, removed in cuts:
        left -= removed
        steps.append((name, left, removed))
    return steps


def _funnels(rounds: Sequence[dict[str, Any]]) -> str:
    charts = [
        svg.funnel_chart(f"round {m['round']} funnel", funnel_steps(m.get("funnel", {})))
        for m in rounds
        if m.get("funnel")
    ]
    titled = "".join(
        f"<div><h3>round {m['round']}: {m['survivors']} of {m['candidates']} survive</h3>{c}</div>"
        for m, c in zip([m for m in rounds if m.get("funnel")], charts, strict=True)
    )
    return f'<div class="charts">{titled}</div>'


def _bias_and_diversity(rounds: Sequence[dict[str, Any]]) -> str:
    last = rounds[-1]
    ev = last.get("eval", {})
    parts = []
    by_type = {arm: ev.get(arm, {}).get("crows_by_type") or {} for arm in ARMS}
    types = sorted({t for d in by_type.values() for t in d})
    if types:
        series = {arm: [_point(by_type[arm].get(t)) for t in types] for arm in ARMS}
        parts.append(
            svg.bar_chart(
                f"CrowS-Pairs stereotype preference by bias type, round {last['round']}",
                types,
                series,
                "% stereotype (50 = none)",
                floor=0.0,
                ceil=100.0,
            )
        )
    for subset in ("candidates", "survivors"):
        series = {
            key: [_point((m.get("diversity") or {}).get(f"{subset}/{key}")) for m in rounds]
            for key in DIVERSITY
        }
        series = {k: v for k, v in series.items() if any(v)}
        if series:
            parts.append(
                svg.series_chart(f"{subset} diversity", _labels(rounds), series, subset, 0.0, 1.0)
            )
    return f'<div class="charts">{"".join(parts)}</div>' + _bias_tables(rounds, types, by_type)


def _bias_tables(
    rounds: Sequence[dict[str, Any]], types: list[str], by_type: dict[str, dict]
) -> str:
    out = ""
    if types:
        rows = [[escape(t)] + [_est(by_type[arm].get(t), 1) for arm in ARMS] for t in types]
        out += "<h3>CrowS-Pairs by bias type (last round)</h3>"
        out += _table(["bias type", *ARMS], rows, "crows")
    critics = sorted({c for m in rounds for c in (m.get("length_bias") or {})})
    if critics:
        rows = [
            [str(m["round"])]
            + [
                fmt(finite(((m.get("length_bias") or {}).get(c) or {}).get("spearman")), 2)
                for c in critics
            ]
            for m in rounds
        ]
        out += "<h3>Length bias: Spearman correlation of critic score with response length</h3>"
        out += _table(["round", *map(escape, critics)], rows, "length-bias")
    return out


def _examples(k: int, rows: list[dict[str, Any]], critics: Sequence[str]) -> str:
    if not rows:
        return f"<h3>round {k}</h3><p>No critiqued candidates.</p>"
    ranked = sorted(rows, key=lambda r: -float(r["combined_score"]))
    best = ranked[:EXAMPLES]
    worst = [r for r in ranked[-EXAMPLES:] if r not in best][::-1]
    head = ["combined", "verdict", "instruction", "response", "critics"]
    html = f"<h3>round {k}</h3>"
    for title, chosen in (("best", best), ("worst", worst)):
        if chosen:
            html += f"<p><b>{title}</b> by combined score</p>"
            html += _table(head, [_example_row(r, critics) for r in chosen], f"examples {title}")
    return html


def _example_row(r: dict[str, Any], critics: Sequence[str]) -> list[str]:
    verdict = "survivor" if r["survivor"] else f"rejected by {r['rejected_by']}"
    lines = []
    for c in critics:
        if f"{c}_score" not in r:
            continue
        mark = "pass" if r[f"{c}_pass"] else '<span class="fail">FAIL</span>'
        lines.append(
            f"<b>{escape(c)}</b> {float(r[f'{c}_score']):.3f} {mark} "
            f"{escape(str(r[f'{c}_reason']))}"
        )
    return [
        f"{float(r['combined_score']):.3f}",
        escape(verdict),
        f'<div class="text">{escape(str(r["instruction"]))}</div>',
        f'<div class="text">{escape(str(r["response"]))}</div>',
        f'<div class="text">{"<br>".join(lines)}</div>',
    ]
