"""Small inline SVG charts for the run report: no scripts, no external files, so the page opens
offline in any browser. Hovering a mark shows its exact value (an SVG <title>).

Every function returns one <svg> element as a string; all text passed in is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

W, H = 560, 220  # default chart size in px
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 26, 40
PALETTE = ("#7f7f7f", "#e08a1e", "#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#8c564b")


@dataclass(frozen=True)
class Point:
    """A value with an optional 95% interval; hi/lo None draws no bar."""

    value: float
    lo: float | None = None
    hi: float | None = None
    note: str = ""


def finite(x: object) -> float | None:
    """x as a float, or None when it is missing, NaN or infinite (e.g. a figure not measured)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _range(values: Sequence[float], floor: float | None, ceil: float | None) -> tuple[float, float]:
    lo = min(values, default=0.0) if floor is None else floor
    hi = max(values, default=1.0) if ceil is None else ceil
    if hi - lo < 1e-12:  # a flat series still needs a visible axis
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _values(series: dict[str, Sequence[Point | None]]) -> list[float]:
    """Every value and interval end in the series: what the y axis must show."""
    ends = (v for pts in series.values() for p in pts if p for v in (p.value, p.lo, p.hi))
    return [v for v in ends if v is not None]


class _Frame:
    """Axes: y ticks and grid on the left, category labels along the bottom."""

    def __init__(self, ylo: float, yhi: float, labels: Sequence[str], ylabel: str) -> None:
        self.ylo, self.yhi, self.labels = ylo, yhi, list(labels)
        self.parts: list[str] = []
        self.plot_w, self.plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
        # enough digits that the five ticks differ, however narrow the range
        digits = max(0, min(6, 1 - math.floor(math.log10((yhi - ylo) / 4))))
        for i in range(5):
            v = ylo + (yhi - ylo) * i / 4
            y = self.y(v)
            self.parts.append(
                f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                f'<text x="{PAD_L - 4}" y="{y + 3:.1f}" text-anchor="end">{v:.{digits}f}</text>'
            )
        crowded = len(self.labels) > 5  # long labels would overlap: stagger them on two rows
        for i, label in enumerate(self.labels):
            y = H - PAD_B + 13 + (10 * (i % 2) if crowded else 0)
            self.parts.append(
                f'<text x="{self.x(i):.1f}" y="{y}" text-anchor="middle">{escape(label)}</text>'
            )
        self.parts.append(
            f'<text x="12" y="{PAD_T + self.plot_h / 2:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {PAD_T + self.plot_h / 2:.1f})">{escape(ylabel)}</text>'
        )

    def x(self, i: float) -> float:
        return PAD_L + self.plot_w * (i + 0.5) / max(len(self.labels), 1)

    def y(self, v: float) -> float:
        return PAD_T + self.plot_h * (1 - (v - self.ylo) / (self.yhi - self.ylo))

    def slot(self) -> float:
        return self.plot_w / max(len(self.labels), 1)

    def svg(self, title: str, legend: Sequence[tuple[str, str]] = ()) -> str:
        keys = "".join(
            f'<rect x="{PAD_L + 8 + 110 * i}" y="{H - 12}" width="10" height="10" fill="{c}"/>'
            f'<text x="{PAD_L + 22 + 110 * i}" y="{H - 3}">{escape(name)}</text>'
            for i, (name, c) in enumerate(legend)
        )
        return (
            f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
            f"<title>{escape(title)}</title>"
            f'<text x="{PAD_L}" y="15" class="head">{escape(title)}</text>'
            + "".join(self.parts)
            + keys
            + "</svg>"
        )


def _bar(x: float, p: Point, f: _Frame, color: str) -> str:
    """An interval bar with caps, when the point has one."""
    if p.lo is None or p.hi is None:
        return ""
    y1, y2 = f.y(p.lo), f.y(p.hi)
    return (
        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{color}"/>'
        f'<line x1="{x - 3:.1f}" x2="{x + 3:.1f}" y1="{y1:.1f}" y2="{y1:.1f}" stroke="{color}"/>'
        f'<line x1="{x - 3:.1f}" x2="{x + 3:.1f}" y1="{y2:.1f}" y2="{y2:.1f}" stroke="{color}"/>'
    )


def _hover(p: Point, name: str) -> str:
    span = "" if p.lo is None else f" [{fmt(p.lo)}, {fmt(p.hi)}]"
    return f"<title>{escape(name)}: {fmt(p.value)}{span}{escape(p.note)}</title>"


def series_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[Point | None]],
    ylabel: str = "",
    floor: float | None = None,
    ceil: float | None = None,
) -> str:
    """Lines over categories (rounds), one per series, each point with its interval bar. Series
    are drawn side by side in a slot so that overlapping intervals stay readable."""
    f = _Frame(*_range(_values(series), floor, ceil), labels, ylabel)
    step = f.slot() * 0.5 / max(len(series), 1)
    legend = []
    for s, (name, pts) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        legend.append((name, color))
        shift = (s - (len(series) - 1) / 2) * step
        xy = [(f.x(i) + shift, f.y(p.value)) for i, p in enumerate(pts) if p]
        if len(xy) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            f.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
        for i, p in enumerate(pts):
            if p is None:
                continue
            x = f.x(i) + shift
            f.parts.append(
                _bar(x, p, f, color) + f'<circle cx="{x:.1f}" cy="{f.y(p.value):.1f}" r="3.5" '
                f'fill="{color}">{_hover(p, f"{name}, {labels[i]}")}</circle>'
            )
    return f.svg(title, legend)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[Point | None]],
    ylabel: str = "",
    floor: float | None = 0.0,
    ceil: float | None = None,
) -> str:
    """Grouped vertical bars (one group per label, one bar per series) with interval bars."""
    f = _Frame(*_range(_values(series), floor, ceil), labels, ylabel)
    width = f.slot() * 0.8 / max(len(series), 1)
    legend = []
    for s, (name, pts) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        legend.append((name, color))
        for i, p in enumerate(pts):
            if p is None:
                continue
            x = f.x(i) - f.slot() * 0.4 + width * s
            top, bottom = f.y(max(p.value, f.ylo)), f.y(max(f.ylo, min(0.0, f.yhi)))
            f.parts.append(
                f'<rect x="{x:.1f}" y="{min(top, bottom):.1f}" width="{width * 0.9:.1f}" '
                f'height="{abs(bottom - top):.1f}" fill="{color}">'
                f"{_hover(p, f'{name}, {labels[i]}')}</rect>" + _bar(x + width * 0.45, p, f, "#222")
            )
    return f.svg(title, legend)


def strip_chart(
    title: str,
    labels: Sequence[str],
    groups: Sequence[Sequence[float]],
    ylabel: str = "score",
    marks: Callable[[int, int], bool] | None = None,
) -> str:
    """Every value of each group as a dot (spread sideways by a fixed pattern, not at random, so
    the page is the same each time), the group's mean as a bar. `marks(group, index)` True draws
    the dot filled (e.g. a survivor), False hollow."""
    f = _Frame(0.0, 1.0, labels, ylabel)
    for g, values in enumerate(groups):
        for i, v in enumerate(values):
            x = f.x(g) + f.slot() * 0.3 * (((i * 0.618) % 1.0) - 0.5)
            filled = marks is None or marks(g, i)
            fill = PALETTE[2] if filled else "none"
            f.parts.append(
                f'<circle cx="{x:.1f}" cy="{f.y(min(max(v, 0.0), 1.0)):.1f}" r="2.5" '
                f'fill="{fill}" stroke="{PALETTE[2]}" fill-opacity="0.6"><title>{v:.3f}</title>'
                "</circle>"
            )
        if values:
            mean = sum(values) / len(values)
            x, half = f.x(g), f.slot() * 0.22
            f.parts.append(
                f'<line x1="{x - half:.1f}" x2="{x + half:.1f}" y1="{f.y(mean):.1f}" '
                f'y2="{f.y(mean):.1f}" stroke="{PALETTE[5]}" stroke-width="2">'
                f"<title>mean {mean:.3f} (n {len(values)})</title></line>"
            )
    legend = [("survivor", PALETTE[2]), ("mean", PALETTE[5])] if marks else [("mean", PALETTE[5])]
    return f.svg(title, legend)


def funnel_chart(title: str, steps: Sequence[tuple[str, int, int]]) -> str:
    """Horizontal bars: (step, candidates left after it, removed by it), widest first."""
    top = max((left + removed for _, left, removed in steps), default=1) or 1
    row, label_w = 20, 110
    height = PAD_T + row * len(steps) + 6
    parts = []
    for i, (name, left, removed) in enumerate(steps):
        y = PAD_T + row * i
        kept_w = (W - label_w - 60) * left / top
        cut_w = (W - label_w - 60) * removed / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{kept_w:.1f}" height="{row - 5}" '
            f'fill="{PALETTE[2]}"><title>{escape(name)}: {left} left</title></rect>'
            f'<rect x="{label_w + kept_w:.1f}" y="{y + 2}" width="{cut_w:.1f}" '
            f'height="{row - 5}" fill="{PALETTE[5]}" fill-opacity="0.5">'
            f"<title>{escape(name)}: {removed} removed</title></rect>"
            f'<text x="{label_w + kept_w + cut_w + 4:.1f}" y="{y + 13}">{left}'
            f"{f' (-{removed})' if removed else ''}</text>"
        )
    return (
        f'<svg class="chart" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
        f'role="img"><title>{escape(title)}</title>' + "".join(parts) + "</svg>"
    )
