"""Pull-request report: what changed in params and metrics against a base git revision.

``gather`` does the I/O (git, ``dvc metrics/params diff``, files in the workspace); ``render``
turns that into markdown and is a pure function, so every case (first run, added or removed
metrics, nothing changed, a regression) is tested without a repository.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import pandas as pd

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import CANDIDATE_FAMILIES
from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.core.files import file_md5
from sentiment_pipeline.review import curves as curve
from sentiment_pipeline.review.curves import CurveError, Curves
from sentiment_pipeline.review.lockcheck import result_differences
from sentiment_pipeline.review.tolerance import ABS_TOLERANCE, Difference, numbers_close

log = logging.getLogger(__name__)

MARKER = "<!-- sentiment-pipeline-report -->"
BASELINES = paths.METRICS_DIR / "baselines.json"
# GitHub refuses a comment body longer than this many characters (the PR comment step would fail).
COMMENT_LIMIT = 65_536


@dataclass
class Snapshot:
    """The git-tracked results of one pipeline run."""

    test: dict | None = None
    selection: dict | None = None
    cv: dict[str, dict] = field(default_factory=dict)
    baselines: dict | None = None
    timing: dict[str, dict] = field(default_factory=dict)  # measured seconds per family
    curves: Curves = field(default_factory=Curves)  # plots/roc, plots/precision_recall, calibration

    @property
    def empty(self) -> bool:
        return self.test is None and self.selection is None and not self.cv

    @property
    def cv_f1(self) -> dict[str, float]:
        """Mean CV macro-F1 by family: what the selection compared the families on."""
        return {family: summary["cv_f1_macro_mean"] for family, summary in self.cv.items()
                if _is_number(summary.get("cv_f1_macro_mean"))}

    @property
    def per_class_f1(self) -> dict[str, float]:
        """Test F1 by class (``per_class.<label>.f1`` in metrics/test.json), in the file's label
        order; {} when the run records none (older runs, or no test metrics)."""
        per_class = (self.test or {}).get("per_class") or {}
        return {label: scores["f1"] for label, scores in per_class.items()
                if isinstance(scores, dict) and _is_number(scores.get("f1"))}

    def per_class_score(self, name: str) -> dict[str, float]:
        """``per_class.<label>.<name>`` of metrics/test.json by class (e.g. roc_auc)."""
        per_class = (self.test or {}).get("per_class") or {}
        return {label: scores[name] for label, scores in per_class.items()
                if isinstance(scores, dict) and _is_number(scores.get(name))}


@dataclass
class ReportInputs:
    base_rev: str
    base: Snapshot
    current: Snapshot
    metrics_diff_md: str = ""
    params_diff_md: str = ""
    confusion: pd.DataFrame | None = None
    wall_time_seconds: float | None = None
    max_f1_macro_drop: float | None = None
    # Result files (metrics/, plots/) differing beyond the tolerance; None: not compared.
    differences: list[Difference] | None = None
    metrics_within_tolerance: int = 0  # metric values that moved less than the tolerance
    curve_classes: int = 6  # per-class ROC/PR charts at most (report.curve_classes)


@dataclass
class Report:
    markdown: str
    regression: str | None  # why the gate failed, or None


# ------------------------------------------------------------------ gathering
def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def default_base(root: Path) -> str:
    """The merge-base of HEAD with main (or origin/main)."""
    for branch in ("main", "origin/main"):
        result = _git("merge-base", "HEAD", branch, cwd=root)
        if result.returncode == 0:
            return result.stdout.strip()
    raise PipelineError("cannot find a merge-base with 'main' or 'origin/main'; pass --base REV")


def _read_json_at(root: Path, rev: str | None, path: Path) -> dict | None:
    """A JSON file at ``rev`` (None: the workspace); None when it does not exist there."""
    if rev is None:
        file = root / path
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    result = _git("show", f"{rev}:{path.as_posix()}", cwd=root)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _plot_files_at(root: Path, rev: str | None, directory: Path) -> list[Path]:
    """The .json files directly in ``directory`` at ``rev`` (None: the workspace)."""
    if rev is None:
        return sorted(p.relative_to(root) for p in (root / directory).glob("*.json"))
    listed = _git("ls-tree", "--name-only", f"{rev}:{directory.as_posix()}", cwd=root)
    names = listed.stdout.split() if listed.returncode == 0 else []
    return sorted(directory / name for name in names if name.endswith(".json"))


def _curve_rows(root: Path, rev: str | None, path: Path, key: str) -> list[dict] | None:
    where = f"{path} at {rev}" if rev else str(path)
    try:
        data = _read_json_at(root, rev, path)
    except json.JSONDecodeError as error:
        raise CurveError(f"{where}: not JSON ({error})") from error
    if data is None:
        return None
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise CurveError(f"{where}: expected a {key!r} list of points (a DVC plot file)")
    return rows


def read_curves(root: Path, rev: str | None) -> Curves:
    """The evaluate stage's curves at ``rev``; empty where a revision has none (older runs)."""
    found = Curves(calibration=_curve_rows(root, rev, paths.CALIBRATION, "calibration"))
    for directory, key, target in ((paths.ROC_DIR, "roc", found.roc),
                                   (paths.PRECISION_RECALL_DIR, "precision_recall",
                                    found.precision_recall)):
        for path in _plot_files_at(root, rev, directory):
            rows = _curve_rows(root, rev, path, key)
            if rows is not None:
                target[path.stem] = rows
    return found


def _file_md5(path: Path) -> str | None:
    return file_md5(path) if path.is_file() else None


def read_snapshot(root: Path, rev: str | None) -> Snapshot:
    cv, timing = {}, {}
    # The families select compared: a family dropped from train.families leaves its files behind.
    compared = _read_json_at(root, rev, paths.CV_COMPARISON)
    listed = {row["family"] for row in compared} if isinstance(compared, list) else set(CANDIDATE_FAMILIES)
    for family in (f for f in CANDIDATE_FAMILIES if f in listed):
        summary = _read_json_at(root, rev, paths.cv_summary(family))
        if summary is None and family == "ensemble":  # where revisions before 2026-12 kept it
            summary = _read_json_at(root, rev, paths.CV_METRICS_DIR / "ensemble.json")
        if summary is not None and "skipped" not in summary:  # no ensemble (train.ensemble.members: [])
            cv[family] = summary
        seconds = _read_json_at(root, rev, paths.train_timing(family)) if rev is None else None
        # only the seconds of the run that wrote this summary (see stages/train.write_timing)
        if seconds is not None and seconds.get("summary_md5") == _file_md5(root / paths.cv_summary(family)):
            timing[family] = seconds
    return Snapshot(
        test=_read_json_at(root, rev, paths.TEST_METRICS),
        selection=_read_json_at(root, rev, paths.SELECTION),
        cv=cv,
        baselines=_read_json_at(root, rev, BASELINES),
        timing=timing,
        curves=read_curves(root, rev),
    )


def _dvc_md(root: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args, "--md"], cwd=root,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"'dvc {' '.join(args)}' failed: {result.stderr.strip()}")
    table = result.stdout.strip()
    # dvc prints a header with no rows when nothing differs
    return table if table.count("\n") >= 2 else ""


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_diff_table(diff: dict[str, dict[str, dict]], base_label: str,
                       tolerance: float = ABS_TOLERANCE) -> tuple[str, int]:
    """``dvc metrics diff --json`` as a markdown table, leaving out values that moved less than
    the tolerance (what another CPU's last bits can do); returns the table and how many were
    left out."""
    rows, hidden = [], 0
    for path, metrics in sorted(diff.items()):
        if paths.TIMING_DIR.as_posix() in path:
            continue
        for name, change in sorted(metrics.items()):
            old, new = change.get("old"), change.get("new")
            if old == new:
                continue
            if _is_number(old) and _is_number(new) and numbers_close(old, new, tolerance):
                hidden += 1
                continue
            delta = f"{new - old:+.4g}" if _is_number(old) and _is_number(new) else "—"
            rows.append(f"| {path} | {name} | {_cell(old)} | {_cell(new)} | {delta} |")
    if not rows:
        return "", hidden
    header = [f"| Path | Metric | {base_label} | workspace | Change |", "| --- | --- | --- | --- | --- |"]
    return "\n".join(header + rows), hidden


def _metrics_diff(root: Path, base_rev: str) -> tuple[str, int]:
    result = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", base_rev, "--json"],
                            cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"'dvc metrics diff {base_rev}' failed: {result.stderr.strip()}")
    return metrics_diff_table(json.loads(result.stdout or "{}"), base_rev[:12])


def confusion_table(root: Path) -> pd.DataFrame | None:
    file = root / paths.CONFUSION_MATRIX
    if not file.is_file():
        return None
    pairs = pd.DataFrame(json.loads(file.read_text(encoding="utf-8")))
    return pd.crosstab(pairs["actual"], pairs["predicted"])


def gather(root: Path, base_rev: str, wall_time_seconds: float | None = None,
           max_f1_macro_drop: float | None = None, curve_classes: int = 6) -> ReportInputs:
    if _git("rev-parse", "--verify", "--quiet", f"{base_rev}^{{commit}}", cwd=root).returncode != 0:
        raise PipelineError(f"base revision {base_rev!r} is not a commit in this repository")
    metrics_md, within_tolerance = _metrics_diff(root, base_rev)
    return ReportInputs(
        base_rev=base_rev,
        base=read_snapshot(root, base_rev),
        current=read_snapshot(root, None),
        metrics_diff_md=metrics_md,
        params_diff_md=_dvc_md(root, "params", "diff", base_rev),
        confusion=confusion_table(root),
        wall_time_seconds=wall_time_seconds,
        max_f1_macro_drop=max_f1_macro_drop,
        differences=result_differences(root, base_rev),
        metrics_within_tolerance=within_tolerance,
        curve_classes=curve_classes,
    )


# ------------------------------------------------------------------ rendering
def _delta(new: float | None, old: float | None) -> str:
    if old is None and new is None:
        return ""
    if old is None:
        return "new"
    if new is None:
        return "removed"
    change = new - old
    if numbers_close(new, old):
        return "= 0.0000"
    return f"{'▲' if change > 0 else '▼'} {change:+.4f}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _metric(snapshot: Snapshot, name: str) -> float | None:
    return None if snapshot.test is None else snapshot.test.get(name)


def _family(snapshot: Snapshot) -> str | None:
    return None if snapshot.selection is None else snapshot.selection.get("family")


def regression_reason(inputs: ReportInputs) -> str | None:
    threshold = inputs.max_f1_macro_drop
    new, old = _metric(inputs.current, "f1_macro"), _metric(inputs.base, "f1_macro")
    if threshold is None or new is None or old is None:
        return None
    drop = old - new
    if drop > threshold:
        return (f"test macro-F1 dropped by {drop:.4f} ({old:.4f} → {new:.4f}), more than the "
                f"{threshold:.4f} allowed by `report.max_f1_macro_drop`")
    return None


def _headline(inputs: ReportInputs) -> list[str]:
    current, base = inputs.current, inputs.base
    if current.empty:
        return ["**No pipeline results in the workspace.** Run `dvc repro` first."]
    family, base_family = _family(current), _family(base)
    lines = [f"**Selected model:** `{family}`"
             + ("" if base.empty else f" (base: `{base_family}`)" if base_family != family else " (unchanged)")]
    if base.empty:
        lines.append(f"_The base `{inputs.base_rev[:12]}` has no metrics yet: this is the first run._")
    lines += ["", "| | base | this change | Δ |", "| --- | --- | --- | --- |"]
    for label, name in (("test macro-F1", "f1_macro"), ("test accuracy", "accuracy"),
                        ("test weighted F1", "f1_weighted")):
        new, old = _metric(current, name), _metric(base, name)
        lines.append(f"| {label} | {_fmt(old)} | {_fmt(new)} | {_delta(new, old)} |")
    return lines


def _cv_section(inputs: ReportInputs) -> list[str]:
    families = [f for f in CANDIDATE_FAMILIES if f in inputs.current.cv or f in inputs.base.cv]
    if not families:
        return ["_No cross-validation results._"]
    selected = _family(inputs.current)
    lines = ["| family | CV macro-F1 base | CV macro-F1 now | ± std | Δ | resampling (CV) | candidates | s per fit | search s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for family in families:
        new, old = inputs.current.cv.get(family), inputs.base.cv.get(family)
        new_mean = None if new is None else new["cv_f1_macro_mean"]
        old_mean = None if old is None else old["cv_f1_macro_mean"]
        std = "—" if new is None else f"{new['cv_f1_macro_std']:.4f}"
        count = "—" if new is None else str(new.get("n_candidates", "—"))
        name = f"**{family}** ✓" if family == selected else family
        timing = inputs.current.timing.get(family, {})
        per_fit, search = timing.get("mean_fit_seconds"), timing.get("search_seconds")
        lines.append(f"| {name} | {_fmt(old_mean)} | {_fmt(new_mean)} | {std} | "
                     f"{_delta(new_mean, old_mean)} | {_resampling_cell(new)} | {count} | "
                     f"{'—' if per_fit is None else f'{per_fit:.2f}'} | "
                     f"{'—' if search is None else f'{search:.1f}'} |")
    return lines


def _resampling_cell(summary: dict | None) -> str:
    """The resampling the family's best candidate uses; when it was a grid dimension, every
    strategy's best CV score, the winner first and in bold."""
    if summary is None:
        return "—"
    scores = summary.get("resampling_cv_f1_macro")
    chosen = summary.get("best_params", {}).get("resampling")
    if not scores:
        return "fixed"
    ranked = sorted(scores.items(), key=lambda item: item[0] != chosen)
    return " / ".join(f"**{name}** {score:.4f}" if name == chosen else f"{name} {score:.4f}"
                      for name, score in ranked)


# ------------------------------------------------------------------ charts
# Mermaid ``xychart-beta`` blocks: GitHub renders them inside a PR comment, so the report needs no
# hosted images. Two ``bar`` series are drawn at the same x, full width, the later over the earlier
# (mermaid's xychart BarPlot has no grouping), so a comparison is bars for this change and a line
# for the base, and a caption stands in for the legend xychart does not have.
CHART_PADDING = 0.02  # kept between the data and the axis ends
CHART_STEP = 0.05  # the axis ends are rounded outwards to a multiple of this


def y_axis_range(values: Sequence[float], padding: float = CHART_PADDING,
                 step: float = CHART_STEP) -> tuple[float, float]:
    """Axis ends a little beyond the data, on multiples of ``step`` and within [0, 1]: from 0 the
    bars of scores a few hundredths apart would look the same."""
    if not values:
        raise ValueError("values: need at least one number to choose an axis range")
    if not all(_is_number(v) and math.isfinite(v) for v in values):
        raise ValueError(f"values: expected finite numbers, got {list(values)!r}")
    if padding < 0 or step <= 0:
        raise ValueError(f"padding must be >= 0 and step > 0, got padding={padding}, step={step}")
    # round() first, so 0.7/0.05 = 13.999… still counts as a whole step
    low = math.floor(round((min(values) - padding) / step, 9)) * step
    high = math.ceil(round((max(values) + padding) / step, 9)) * step
    low, high = round(max(0.0, low), 10), round(min(1.0, high), 10)
    if high <= low:  # all values at 1 (or 0): open the range on the side that has room
        low, high = (round(high - step, 10), high) if high >= 1.0 else (low, round(low + step, 10))
    return low, high


def _mermaid_text(text: str) -> str:
    """A quoted xychart string. Always quoted: unquoted, a label that is a keyword (``line``,
    ``bar``, ``title``, any case) fails to parse and one with spaces loses them. A string cannot
    hold ``"`` (there is no escape) and a leading backtick starts a markdown string, so both
    become ``'``."""
    cleaned = " ".join(str(text).replace('"', "'").replace("`", "'").split())
    return f'"{cleaned}"'


def _check_series(name: str, values: Sequence[float | None], size: int) -> None:
    if len(values) != size:
        raise ValueError(f"{name}: {len(values)} value(s) for {size} categories")
    bad = [v for v in values if v is not None and not (_is_number(v) and math.isfinite(v))]
    if bad:
        raise ValueError(f"{name}: expected finite numbers or None, got {bad!r}")


def mermaid_bar_chart(title: str, categories: Sequence[str], bars: Sequence[float | None],
                      y_label: str, line: Sequence[float | None] | None = None,
                      x_label: str = "") -> list[str]:
    """A fenced ``xychart-beta`` block: ``bars`` per category, and ``line`` over them when given.
    None is a category with no value on that side: it is drawn at the axis floor (a zero-height
    bar), since xychart cannot leave a gap and a 0 below a data-chosen axis would not draw."""
    if not str(title).strip():
        raise ValueError("title: must not be empty")
    if not categories:
        raise ValueError("categories: need at least one")
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories: duplicates in {list(categories)!r}")
    _check_series("bars", bars, len(categories))
    if line is not None:
        _check_series("line", line, len(categories))
    known = [v for v in [*bars, *(line or [])] if v is not None]
    if not known:
        raise ValueError("bars: no values to draw (every value is None)")
    low, high = y_axis_range(known)

    def values(series: Sequence[float | None]) -> str:
        return ", ".join(f"{low if v is None else v:.4f}" for v in series)

    x_title = f"{_mermaid_text(x_label)} " if x_label else ""
    lines = ["```mermaid", "xychart-beta", f"    title {_mermaid_text(title)}",
             f"    x-axis {x_title}[{', '.join(_mermaid_text(c) for c in categories)}]",
             f"    y-axis {_mermaid_text(y_label)} {low:g} --> {high:g}",
             f"    bar [{values(bars)}]"]
    if line is not None:
        lines.append(f"    line [{values(line)}]")  # after the bars, so it is drawn on top
    return lines + ["```"]


def _one_sided(categories: Sequence[str], values: dict[str, float]) -> str:
    return ", ".join(f"`{c}`" for c in categories if c not in values)


def comparison_chart(title: str, x_label: str, y_label: str, categories: Sequence[str],
                     current: dict[str, float], base: dict[str, float], base_rev: str) -> list[str]:
    """Bars for this change, a line for the base, and the caption saying which is which; only
    bars when the base has none of these values (a first run). [] when this change has none: the
    chart illustrates the change, and the table already says what was removed."""
    if not current:
        return []
    bars = [current.get(c) for c in categories]
    line = [base.get(c) for c in categories] if base else None
    chart = mermaid_bar_chart(title, categories, bars, y_label, line=line, x_label=x_label)
    if line is None:
        caption = f"Bars: this change (the base `{base_rev[:12]}` has no {y_label} yet)."
    else:
        caption = f"Bars: this change; line: base `{base_rev[:12]}` (xychart draws no legend)."
        only_base, only_current = _one_sided(categories, current), _one_sided(categories, base)
        if only_current:
            caption += f" No base result for {only_current}: the line drops to the axis floor there."
        if only_base:
            caption += f" Not in this change: {only_base} (line only, no bar)."
    return ["", *chart, f"_{caption}_"]


def _cv_chart(inputs: ReportInputs) -> list[str]:
    current, base = inputs.current.cv_f1, inputs.base.cv_f1
    families = [f for f in CANDIDATE_FAMILIES if f in current or f in base]
    return comparison_chart("CV macro-F1 per family", "family", "CV macro-F1", families,
                            current, base, inputs.base_rev)


def _per_class_chart(inputs: ReportInputs) -> list[str]:
    current, base = inputs.current.per_class_f1, inputs.base.per_class_f1
    classes = [*current, *(c for c in base if c not in current)]
    return comparison_chart("Test F1 per class", "class", "test F1", classes,
                            current, base, inputs.base_rev)


# ------------------------------------------------------------------ curves
def _curve_classes(inputs: ReportInputs) -> list[tuple[str, str]]:
    """(label, plot file stem) of every class with a curve on either side, in the label order of
    metrics/test.json (this change's, then the base's); stems no label maps to come last."""
    from sentiment_pipeline.pipeline.evaluate import class_file_stem  # sklearn: only when drawing

    stems = {stem for snapshot in (inputs.current, inputs.base)
             for stem in [*snapshot.curves.roc, *snapshot.curves.precision_recall]}
    labels = [*((inputs.current.test or {}).get("per_class") or {}),
              *((inputs.base.test or {}).get("per_class") or {})]
    found: dict[str, str] = {}
    for label in labels:
        stem = class_file_stem(label)
        if stem in stems and stem not in found.values():
            found[label] = stem
    found.update({stem: stem for stem in sorted(stems - set(found.values()))})
    return list(found.items())


def _area_table(inputs: ReportInputs, labels: Sequence[str]) -> list[str]:
    """ROC AUC and average precision per class (metrics/test.json): exact, where the charts are
    read off a 21-point grid, and every class even when only some are drawn."""
    current, base = inputs.current, inputs.base
    scores = {name: (current.per_class_score(name), base.per_class_score(name))
              for name in ("roc_auc", "average_precision")}
    if not any(now for now, _ in scores.values()):
        return []
    lines = ["| class | ROC AUC base | ROC AUC now | Δ | AP base | AP now | Δ |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label in labels:
        cells = []
        for now, old in scores.values():
            new_value, old_value = now.get(label), old.get(label)
            cells += [_fmt(old_value), _fmt(new_value), _delta(new_value, old_value)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _moved(inputs: ReportInputs, label: str) -> float:
    """How far a class's ROC AUC and AP moved together (a class new to this change: first)."""
    total = 0.0
    for name in ("roc_auc", "average_precision"):
        new = inputs.current.per_class_score(name).get(label)
        old = inputs.base.per_class_score(name).get(label)
        if new is None or old is None:
            return math.inf
        total += abs(new - old)
    return total


def _two_sided_caption(inputs: ReportInputs, has_base: bool, what: str) -> str:
    if has_base:
        return (f"{curve.colour(0).capitalize()}: this change; {curve.colour(1)}: base "
                f"`{inputs.base_rev[:12]}`.")
    return f"{curve.colour(0).capitalize()}: this change (the base `{inputs.base_rev[:12]}` has no {what})."


def _class_charts(inputs: ReportInputs, label: str, stem: str) -> list[str]:
    at, rev = curve.grid(), inputs.base_rev
    lines: list[str] = []
    for directory, rows_of, sample, title, x_label, y_label in (
            (paths.ROC_DIR, lambda c: c.roc, curve.roc_on_grid, "ROC", "false positive rate",
             "true positive rate"),
            (paths.PRECISION_RECALL_DIR, lambda c: c.precision_recall,
             curve.precision_recall_on_grid, "Precision-recall", "recall", "precision")):
        now, old = rows_of(inputs.current.curves).get(stem), rows_of(inputs.base.curves).get(stem)
        if now is None:
            continue
        file = f"{directory / stem}.json"
        series = [sample(now, at, source=file)]
        if old is not None:
            series.append(sample(old, at, source=f"{file} at {rev}"))
        lines += ["", *curve.line_chart(f"{title}: {label} vs rest", x_label, at, y_label, series)]
        lines.append(f"_{_two_sided_caption(inputs, old is not None, f'{title} curve for {label}')}_")
    return lines


def _calibration_chart(inputs: ReportInputs) -> list[str]:
    now, old = inputs.current.curves.calibration, inputs.base.curves.calibration
    if not now:
        return []
    rev = inputs.base_rev
    at = curve.calibration_grid(now, *([old] if old else []))
    series = [curve.calibration_on_grid(now, at, source=str(paths.CALIBRATION))]
    if old:
        series.append(curve.calibration_on_grid(old, at, source=f"{paths.CALIBRATION} at {rev}"))
    caption = _two_sided_caption(inputs, bool(old), "reliability curve")
    caption += (f" {curve.colour(len(series)).capitalize()}: perfect calibration. Top-label: the"
                " share of right predictions by confidence, linear between the bins' points and"
                " flat beyond a side's first and last bin.")
    chart = curve.line_chart("Reliability (test split)", "confidence of the predicted class", at,
                             "fraction correct", [*series, at])
    return ["", *chart, f"_{caption}_"]


def _curves_section(inputs: ReportInputs, max_classes: int, why: str) -> list[str]:
    """The per-class area table, the reliability chart, and ROC and precision-recall charts
    (this change against the base) for at most ``max_classes`` classes: those whose areas moved
    most when there are more."""
    classes = _curve_classes(inputs)
    labels = [label for label, _ in classes]
    lines = _area_table(inputs, labels) + _calibration_chart(inputs)
    drawn = [(label, stem) for label, stem in classes
             if stem in inputs.current.curves.roc or stem in inputs.current.curves.precision_recall]
    if len(drawn) > max_classes:
        keep = {label for label, _ in sorted(drawn, key=lambda c: -_moved(inputs, c[0]))[:max_classes]}
        left_out = [label for label, _ in drawn if label not in keep]
        drawn = [c for c in drawn if c[0] in keep]
        lines += ["", f"_ROC and precision-recall charts for the {len(drawn)} class(es) whose ROC AUC"
                      f" and AP moved most ({why}); not drawn: "
                      f"{', '.join(f'`{label}`' for label in left_out)} (see the table)._"]
    for label, stem in drawn:
        lines += _class_charts(inputs, label, stem)
    if not lines:
        return ["_No ROC, precision-recall or calibration curves in the workspace._"]
    if drawn:
        lines += ["", "_ROC and precision-recall curves are read step-wise (as their thresholds"
                      " define them) at 0, 0.05, …, 1 of the x-axis._"]
    return lines


def _confusion_section(confusion: pd.DataFrame | None) -> list[str]:
    if confusion is None:
        return ["_No confusion matrix in the workspace._"]
    labels = list(confusion.columns)
    lines = ["| actual \\ predicted | " + " | ".join(labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    for actual, row in confusion.iterrows():
        cells = [f"**{row[p]}**" if p == actual else str(row[p]) for p in labels]
        lines.append(f"| {actual} | " + " | ".join(cells) + " |")
    return lines


def _baselines_section(inputs: ReportInputs) -> list[str]:
    baselines = inputs.current.baselines
    if not baselines:
        return ["_This run records no baselines (`metrics/baselines.json`)._"]
    model_f1 = _metric(inputs.current, "f1_macro")
    lines = ["| baseline | accuracy | macro-F1 | model ahead by |", "| --- | --- | --- | --- |"]
    for name, scores in baselines.items():
        if "f1_macro" not in scores:  # e.g. a lexicon on labels that are not sentiments
            lines.append(f"| {name} | — | — | not applicable: {scores.get('reason', 'no scores')} |")
            continue
        ahead = "—" if model_f1 is None else f"{model_f1 - scores['f1_macro']:+.4f}"
        lines.append(f"| {name} | {_fmt(scores.get('accuracy'))} | {_fmt(scores.get('f1_macro'))} | {ahead} |")
    return lines


def _wall_time(seconds: float | None) -> str:
    if seconds is None:
        return "Pipeline wall time: not measured (pass `--wall-time`)."
    minutes, secs = divmod(round(seconds), 60)
    return f"Pipeline wall time: {minutes}m {secs:02d}s (`dvc repro`)."


def _nothing_changed(inputs: ReportInputs) -> bool:
    """Same params, and the results match to the tolerance (the rule ``check-lock`` applies)."""
    if inputs.params_diff_md or inputs.base.empty:
        return False
    if inputs.differences is not None:
        return not inputs.differences
    return not inputs.metrics_diff_md


def render(inputs: ReportInputs) -> Report:
    """The report; without per-class curve charts when they would take it past GitHub's comment
    limit (the area table and the reliability chart stay)."""
    report = _render(inputs, inputs.curve_classes, f"`report.curve_classes`: {inputs.curve_classes}")
    if len(report.markdown) > COMMENT_LIMIT and inputs.curve_classes > 0:
        log.warning("the report is %d characters with its per-class curve charts, over GitHub's "
                    "%d: rendered without them", len(report.markdown), COMMENT_LIMIT)
        report = _render(inputs, 0, f"with them the comment would pass GitHub's {COMMENT_LIMIT:,}"
                                    "-character limit")
    return report


def _render(inputs: ReportInputs, curve_classes: int, why: str) -> Report:
    regression = regression_reason(inputs)
    lines = [MARKER, "## Sentiment pipeline report", ""]
    if regression:
        lines += [f"> [!CAUTION]\n> **Regression gate failed:** {regression}.", ""]
    if _nothing_changed(inputs):
        lines += [f"**Nothing changed** against `{inputs.base_rev[:12]}`: same params, same metrics"
                  f" (to within {ABS_TOLERANCE:g}).", ""]
    lines += _headline(inputs) + _per_class_chart(inputs)
    lines += ["", f"### Metrics diff (against `{inputs.base_rev[:12]}`)", ""]
    lines.append(inputs.metrics_diff_md or "No metric changed.")
    if inputs.metrics_within_tolerance:
        lines += ["", f"_{inputs.metrics_within_tolerance} metric value(s) moved by less than "
                      f"{ABS_TOLERANCE:g} (the cross-machine tolerance) and are not listed._"]
    lines += ["", "### Params diff", ""]
    lines.append(inputs.params_diff_md or "No parameter changed.")
    lines += ["", "### Cross-validation by family", ""] + _cv_section(inputs) + _cv_chart(inputs)
    lines += ["", "### Test confusion matrix", ""] + _confusion_section(inputs.confusion)
    lines += ["", "### Curves (test split)", ""] + _curves_section(inputs, curve_classes, why)
    lines += ["", "### Baselines", ""] + _baselines_section(inputs)
    lines += ["", _wall_time(inputs.wall_time_seconds), ""]
    return Report(markdown="\n".join(lines), regression=regression)
