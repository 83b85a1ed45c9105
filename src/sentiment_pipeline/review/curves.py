"""ROC, precision-recall and reliability curves of a change against its base, as mermaid charts.

The curves are the evaluate stage's DVC plots (plots/roc/<class>.json, plots/precision_recall/
<class>.json, plots/calibration.json), read at two revisions. Each is resampled onto a fixed grid
of x values so that this change and the base share one x-axis (an ``xychart-beta`` draws every
``line`` series over the same x values) and a chart costs the same few hundred characters
whatever the curve's length: a pull-request comment holds at most 65,536 characters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sentiment_pipeline.core.errors import DataError

# The x values every ROC and precision-recall curve is read at: FPR or recall 0, 0.05, ..., 1.
# 21 points keep a chart near 600 characters; the table beside the charts has the exact areas.
GRID_POINTS = 21
# Reliability: predicted probability from the lowest bin either side reaches, in steps of this.
CALIBRATION_STEP = 0.05
# Line colours, in series order; the caption names them since xychart draws no legend.
PALETTE = (("blue", "#2563eb"), ("orange", "#f97316"), ("grey", "#9ca3af"))
# Values are written to 3 decimals: a thousandth of the chart's height is below a pixel.
DECIMALS = 3


class CurveError(DataError):
    """A plot file does not hold the curve it should."""


@dataclass
class Curves:
    """One revision's curves: rows as the plot files hold them, by class (file stem)."""

    roc: dict[str, list[dict]] = field(default_factory=dict)
    precision_recall: dict[str, list[dict]] = field(default_factory=dict)
    calibration: list[dict] | None = None

    @property
    def empty(self) -> bool:
        return not self.roc and not self.precision_recall and not self.calibration


def _columns(rows: Sequence[dict], x: str, y: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        raise CurveError(f"{source}: no points (expected rows with {x!r} and {y!r})")
    xs, ys = [], []
    for number, row in enumerate(rows, start=1):
        values = (row.get(x), row.get(y)) if isinstance(row, dict) else (None, None)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in values):
            raise CurveError(f"{source}: row {number}: expected finite numbers {x!r} and {y!r}, "
                             f"got {row!r}")
        xs.append(values[0])
        ys.append(values[1])
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def grid(points: int = GRID_POINTS) -> np.ndarray:
    return np.linspace(0.0, 1.0, points)


def roc_on_grid(rows: Sequence[dict], at: np.ndarray, source: str = "roc") -> np.ndarray:
    """Step-wise, as the ROC curve is defined by its thresholds: at FPR x, the highest TPR of an
    operating point whose FPR is at most x (0 before the first point)."""
    fpr, tpr = _columns(rows, "fpr", "tpr", source)
    order = np.argsort(fpr, kind="stable")
    fpr, best = fpr[order], np.maximum.accumulate(tpr[order])
    index = np.searchsorted(fpr, at, side="right") - 1
    return np.where(index >= 0, best[np.clip(index, 0, None)], 0.0)


def precision_recall_on_grid(rows: Sequence[dict], at: np.ndarray,
                             source: str = "precision_recall") -> np.ndarray:
    """Step-wise, as average precision integrates the curve (sklearn's sum of (R_n - R_n-1) P_n):
    at recall r, the precision of the operating point with the smallest recall >= r (of several
    at that recall, the most precise: the highest threshold). Beyond the last recall, its
    precision."""
    recall, precision = _columns(rows, "recall", "precision", source)
    order = np.lexsort((-precision, recall))  # by recall, then the most precise first
    recall, precision = recall[order], precision[order]
    index = np.searchsorted(recall, at, side="left")
    return precision[np.clip(index, 0, len(recall) - 1)]


def calibration_grid(*curves: Sequence[dict], step: float = CALIBRATION_STEP) -> np.ndarray:
    """Predicted probabilities from the multiple of ``step`` at or below the lowest bin of any
    curve to 1 (a top-label confidence is never below 1/k with k classes: no empty chart half)."""
    lows = [min(_columns(c, "prob_pred", "prob_true", "calibration")[0]) for c in curves if c]
    low = math.floor(round(min(lows, default=0.0) / step, 9)) * step
    return np.round(np.arange(low, 1.0 + step / 2, step), 10)


def calibration_on_grid(rows: Sequence[dict], at: np.ndarray,
                        source: str = "calibration") -> np.ndarray:
    """Linear between the bins' (mean predicted probability, fraction right) points, as the
    reliability diagram joins them; held at the first and last bin beyond them."""
    predicted, observed = _columns(rows, "prob_pred", "prob_true", source)
    order = np.argsort(predicted, kind="stable")
    return np.interp(at, predicted[order], observed[order])


def step_area(values: np.ndarray, at: np.ndarray) -> float:
    """The area under a step function sampled left-closed on ``at`` (for tests and the table)."""
    return float(np.sum(values[1:] * np.diff(at)))


# ------------------------------------------------------------------ mermaid
def _text(text: str) -> str:
    """As report._mermaid_text: quoted, no ``"`` or backtick inside."""
    cleaned = " ".join(str(text).replace('"', "'").replace("`", "'").split())
    return f'"{cleaned}"'


def _axis_end(value: float, up: bool) -> float:
    scaled = round(value / CALIBRATION_STEP, 9)
    return round((math.ceil(scaled) if up else math.floor(scaled)) * CALIBRATION_STEP, 10)


def line_chart(title: str, x_label: str, x_values: np.ndarray, y_label: str,
               series: Sequence[np.ndarray]) -> list[str]:
    """A fenced ``xychart-beta`` block of ``line`` series over numeric x values (evenly spaced,
    which is how xychart places the points of a numeric axis), coloured as ``PALETTE``."""
    if not series or len(series) > len(PALETTE):
        raise ValueError(f"series: expected 1 to {len(PALETTE)}, got {len(series)}")
    if len(x_values) < 2 or not np.allclose(np.diff(x_values), x_values[1] - x_values[0]):
        raise ValueError("x_values: need at least two evenly spaced values")
    for number, values in enumerate(series, start=1):
        if len(values) != len(x_values) or not np.all(np.isfinite(values)):
            raise ValueError(f"series {number}: expected {len(x_values)} finite values")
    every = np.concatenate(series)
    low = max(0.0, _axis_end(float(every.min()) - 0.02, up=False))
    high = min(1.0, _axis_end(float(every.max()) + 0.02, up=True))
    palette = ", ".join(code for _, code in PALETTE)
    lines = ["```mermaid", "---", "config:", "  themeVariables:", "    xyChart:",
             f'      plotColorPalette: "{palette}"', "---", "xychart-beta",
             f"    title {_text(title)}",
             f"    x-axis {_text(x_label)} {x_values[0]:g} --> {x_values[-1]:g}",
             f"    y-axis {_text(y_label)} {low:g} --> {high:g}"]
    lines += [f"    line [{', '.join(f'{v:.{DECIMALS}f}' for v in values)}]" for values in series]
    return lines + ["```"]


def colour(index: int) -> str:
    return PALETTE[index][0]
