"""Small server-rendered SVG charts for the monitor report and the dashboard.

Inline SVG needs no JavaScript library and no CDN, so both pages work offline and the HTML
report is one self-contained file. Only what the two pages draw: grouped bars, a line over
time, a heat map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _check_series(categories: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    if not series:
        raise ValueError("series must hold at least one named list of values")
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(categories)} categories")


def _legend(names: Sequence[str], x: float, y: float) -> str:
    items = []
    for i, name in enumerate(names):
        items.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{x + 14:.0f}" y="{y:.0f}" {FONT}>{escape(name)}</text>')
        x += 14 + 6.5 * len(name) + 16  # ~6.5 px per character at 11 px
    return "".join(items)


def _tick(value: float, top: float) -> str:
    """An axis label as precise as the axis needs: 0.25 on a 0-1 axis, 150 on a 0-300 one."""
    if top >= 10:
        return f"{value:.0f}"
    return f"{value:.3g}" if top >= 1 else f"{value:.2f}"


def _svg_open(width: float, height: float, title: str, chart_id: str) -> str:
    """The chart's root element with its accessible title."""
    id_attribute = f' id="{escape(chart_id)}"' if chart_id else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}"'
            f' width="{width}" height="{height}"{id_attribute}><title>{escape(title)}</title>')


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str,
              y_max: float | None = None, width: int = 420, height: int = 220, digits: int = 2,
              chart_id: str = "") -> str:
    """Grouped vertical bars, one group per category, one colour per series, values on top."""
    _check_series(categories, series)
    values = [v for vs in series.values() for v in vs if v is not None]
    top = y_max if y_max is not None else (max(values) * 1.15 if values and max(values) > 0 else 1.0)
    left, right, upper, lower = 36, 10, 34, 40
    plot_w, plot_h = width - left - right, height - upper - lower
    group_w = plot_w / max(len(categories), 1)
    bar_w = group_w * 0.8 / len(series)
    parts = [_svg_open(width, height, title, chart_id) +
             f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>',
             _legend(list(series), left, 28)]
    for tick in range(5):
        value = top * tick / 4
        y = upper + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_tick(value, top)}</text>')
    for g, category in enumerate(categories):
        for s, (name, vs) in enumerate(series.items()):
            value = vs[g]
            if value is None:
                continue
            h = plot_h * min(max(value, 0) / top, 1) if top else 0
            x = left + g * group_w + group_w * 0.1 + s * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{upper + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} {escape(str(category))}: '
                         f'{value:.4g}</title></rect>')
            if len(categories) * len(series) <= 16:
                parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{upper + plot_h - h - 3:.1f}" text-anchor="middle" '
                             f'{FONT}>{value:.{digits}f}</text>')
        parts.append(f'<text x="{left + g * group_w + group_w / 2:.1f}" y="{height - lower + 14}" '
                     f'text-anchor="middle" {FONT}>{escape(str(category))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(labels: Sequence[str], values: Sequence[float | None], *, title: str, width: int = 420,
               height: int = 200, chart_id: str = "", threshold: float | None = None) -> str:
    """One line over ordered labels (e.g. requests per minute), first and last label on the axis.
    A None value is a gap in the line (a check that was not applicable in that run); a
    ``threshold`` is drawn as a dashed red line across the plot."""
    if len(labels) != len(values):
        raise ValueError(f"labels ({len(labels)}) and values ({len(values)}) differ in length")
    left, right, upper, lower = 40, 10, 24, 30
    plot_w, plot_h = width - left - right, height - upper - lower
    present = [v for v in values if v is not None]
    peak = max([*present, *([threshold] if threshold is not None else [])], default=0)
    top = peak * 1.1 if peak > 0 else 1.0
    parts = [_svg_open(width, height, title, chart_id) +
             f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for tick in range(5):
        y = upper + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_tick(top * tick / 4, top)}</text>')

    def y_of(v: float) -> float:
        return upper + plot_h - plot_h * min(max(v, 0) / top, 1)

    if threshold is not None:
        parts.append(f'<line class="threshold" x1="{left}" x2="{width - right}" y1="{y_of(threshold):.1f}" '
                     f'y2="{y_of(threshold):.1f}" stroke="#c62828" stroke-dasharray="4 3">'
                     f'<title>threshold {threshold:g}</title></line>')
    if present:
        step = plot_w / max(len(values) - 1, 1)
        runs: list[list[str]] = [[]]  # unbroken stretches of values
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{left + i * step:.1f},{y_of(v):.1f}")
        for points in runs:
            if len(points) > 1:
                parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
        for i, v in enumerate(values):
            if v is None:
                continue
            beyond = threshold is not None and v > threshold
            parts.append(f'<circle cx="{left + i * step:.1f}" cy="{y_of(v):.1f}" r="2.5" '
                         f'fill="{PALETTE[3] if beyond else PALETTE[0]}"><title>{escape(str(labels[i]))}: {v:g}'
                         f'</title></circle>')
        parts.append(f'<text x="{left}" y="{height - 8}" {FONT}>{escape(str(labels[0]))}</text>'
                     f'<text x="{width - right}" y="{height - 8}" text-anchor="end" {FONT}>{escape(str(labels[-1]))}</text>')
    else:
        parts.append(f'<text x="{left + plot_w / 2}" y="{upper + plot_h / 2}" text-anchor="middle" {FONT}>no data yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], columns: Sequence[str], *, title: str,
            row_title: str = "actual", column_title: str = "predicted", cell: int = 64,
            chart_id: str = "") -> str:
    """A matrix of counts as shaded cells with the numbers in them (a confusion matrix)."""
    if len(matrix) != len(rows) or any(len(r) != len(columns) for r in matrix):
        raise ValueError(f"matrix must be {len(rows)} x {len(columns)} to match its labels")
    left, upper = 90, 50
    width, height = left + cell * len(columns) + 10, upper + cell * len(rows) + 24
    peak = max((v for r in matrix for v in r), default=0) or 1
    parts = [_svg_open(width, height, title, chart_id) +
             f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>'
             f'<text x="{left + cell * len(columns) / 2}" y="30" text-anchor="middle" {FONT}>{escape(column_title)}</text>']
    for j, name in enumerate(columns):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{upper - 6}" text-anchor="middle" {FONT}>{escape(name)}</text>')
    for i, name in enumerate(rows):
        parts.append(f'<text x="{left - 6}" y="{upper + i * cell + cell / 2 + 4}" text-anchor="end" {FONT}>{escape(name)}</text>')
        for j, value in enumerate(matrix[i]):
            shade = value / peak
            fill = f"rgba(76,120,168,{0.08 + 0.92 * shade:.2f})"
            ink = "#fff" if shade > 0.5 else "#222"
            parts.append(f'<rect x="{left + j * cell}" y="{upper + i * cell}" width="{cell - 2}" height="{cell - 2}" fill="{fill}"/>'
                         f'<text x="{left + j * cell + cell / 2 - 1}" y="{upper + i * cell + cell / 2 + 4}" '
                         f'text-anchor="middle" fill="{ink}" {FONT}>{value:g}</text>')
    parts.append(f'<text x="4" y="{height - 6}" {FONT}>rows: {escape(row_title)}</text></svg>')
    return "".join(parts)
