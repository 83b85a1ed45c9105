"""The evaluate stage: score the selected model on the held-out test split with dvclive.

Besides the headline scores it answers the reviewer's other questions: where does the model
fail (confusion matrices, error-analysis rows), how well does it rank each class (one-vs-rest
ROC and precision-recall curves) and can its probabilities be trusted (reliability curve, ECE).
Everything here is a function of its inputs only, so two identical runs write identical bytes.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.core.files import atomic_path

if TYPE_CHECKING:
    from dvclive import Live

log = logging.getLogger(__name__)

# Rounding for the human-readable error-analysis file: enough to rank, short enough to diff.
PROBABILITY_DECIMALS = 4


class EvaluationError(PipelineError):
    """The final model or the test split cannot be evaluated as they are."""


# ------------------------------------------------------------------ scores
def score_predictions(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
    }


def predicted_probabilities(model, texts: pd.Series, classes: list[str]) -> np.ndarray:
    """Class probabilities with column ``i`` for ``classes[i]``, whatever order the model uses."""
    if not hasattr(model, "predict_proba"):
        raise EvaluationError(
            f"the final model ({type(model).__name__}) has no predict_proba; the ROC, "
            "precision-recall and calibration outputs need class probabilities"
        )
    raw = np.asarray(model.predict_proba(texts), dtype=float)
    return in_class_order(raw, list(getattr(model, "classes_", range(raw.shape[1]))), classes)


def in_class_order(raw: np.ndarray, model_classes: list, classes: list[str]) -> np.ndarray:
    """``raw`` probabilities (columns in the model's class order) with column ``i`` for ``classes[i]``."""
    # The pipeline encodes labels as indices into ``classes``; accept label names as well.
    index = {name: i for i, name in enumerate(classes)}
    columns = [index.get(c, c) for c in model_classes]
    if sorted(columns, key=str) != sorted(range(len(classes)), key=str):
        raise EvaluationError(
            f"the final model predicts classes {model_classes}, but models/final/model_card.json "
            f"'classes' lists {classes}"
        )
    proba = np.zeros((raw.shape[0], len(classes)))
    proba[:, columns] = raw
    return proba


def is_one_vs_rest_defined(y_true: np.ndarray, class_index: int) -> bool:
    """ROC and PR need both positives and negatives for the class."""
    positives = int(np.sum(y_true == class_index))
    return 0 < positives < len(y_true)


def one_vs_rest_scores(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """Per-class ROC-AUC and average precision (class vs. the rest) and their macro means.

    The binary target is ``y_true == i`` for every class, including with two classes, where
    ``label_binarize`` would return a single column and silently drop one class.
    """
    per_class = {}
    for i, name in enumerate(classes):
        if not is_one_vs_rest_defined(y_true, i):
            log.warning("class %r is absent from (or is all of) the test split: no ROC-AUC for it", name)
            continue
        target = y_true == i
        per_class[name] = {
            "roc_auc": float(roc_auc_score(target, proba[:, i])),
            "average_precision": float(average_precision_score(target, proba[:, i])),
        }
    macro = {}
    if per_class:
        macro = {
            "roc_auc_macro": float(np.mean([s["roc_auc"] for s in per_class.values()])),
            "average_precision_macro": float(
                np.mean([s["average_precision"] for s in per_class.values()])),
        }
    return {"per_class": per_class, **macro}


# ------------------------------------------------------------------ calibration
def top_label_confidence(proba: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """The probability the model gave its own prediction (the max for argmax classifiers)."""
    return proba[np.arange(len(y_pred)), y_pred]


def top_label_calibration_inputs(proba: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is the most probable class right, its probability): top-label calibration as usually
    defined. A model may predict from something other than its probabilities (the calibrated
    SVM predicts from balanced margins), so ``y_pred`` is not used here."""
    return proba.argmax(axis=1) == y_true, proba.max(axis=1)


def calibration_bin_ids(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins over [0, 1], assigned exactly as sklearn's ``calibration_curve`` does,
    so the ECE and the reliability plot describe the same bins."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], confidence)


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray, n_bins: int) -> float:
    """Sum over equal-width bins of |accuracy - mean confidence|, weighted by the bin's share."""
    if len(confidence) == 0:
        return 0.0
    bins = calibration_bin_ids(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    hits = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    filled = counts > 0
    gaps = np.abs(hits[filled] - confidence_sums[filled]) / counts[filled]
    return float(np.sum(gaps * counts[filled]) / len(confidence))


def calibration_scores(correct: np.ndarray, confidence: np.ndarray, n_bins: int) -> dict:
    return {
        "ece": expected_calibration_error(correct, confidence, n_bins),
        # Mean confidence above the top label's accuracy means over-confident, below under-.
        "mean_confidence": float(np.mean(confidence)) if len(confidence) else 0.0,
        "top_label_accuracy": float(np.mean(correct)) if len(correct) else 0.0,
    }


# ------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class Evaluation:
    classes: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray
    metrics: dict

    @property
    def correct(self) -> np.ndarray:
        return self.y_pred == self.y_true

    @property
    def confidence(self) -> np.ndarray:
        return top_label_confidence(self.proba, self.y_pred)


def require_columns(frame: pd.DataFrame, source: Path | str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EvaluationError(f"{source}: missing column(s) {missing}; the file has columns "
                              f"{list(frame.columns)} (re-run the preprocess stage)")


def encode_labels(labels: pd.Series, classes: list[str], source: Path | str) -> np.ndarray:
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise EvaluationError(
            f"{source}: column 'label' holds {unknown}, which the model was not trained on "
            f"(classes {classes})"
        )
    index = {label: i for i, label in enumerate(classes)}
    return labels.map(index).to_numpy(np.int64)


def evaluate_model(model, texts: pd.Series, y_true: np.ndarray, classes: list[str],
                   calibration_bins: int) -> Evaluation:
    """Predict the test split once and compute every test metric."""
    y_pred = np.asarray(model.predict(texts), dtype=np.int64)
    proba = predicted_probabilities(model, texts, classes)
    return evaluation_from_predictions(y_true, y_pred, proba, classes, calibration_bins)


def evaluation_from_predictions(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray,
                                classes: list[str], calibration_bins: int) -> Evaluation:
    metrics = score_predictions(y_true, y_pred, classes)
    ranking = one_vs_rest_scores(y_true, proba, classes)
    for name, scores in ranking.pop("per_class").items():
        metrics["per_class"][name].update(scores)
    correct, confidence = top_label_calibration_inputs(proba, y_true)
    metrics = {**{k: v for k, v in metrics.items() if k != "per_class"}, **ranking,
               **calibration_scores(correct, confidence, calibration_bins),
               "per_class": metrics["per_class"]}
    return Evaluation(classes=list(classes), y_true=y_true, y_pred=y_pred, proba=proba,
                      metrics=metrics)


# ------------------------------------------------------------------ error analysis
ERROR_COLUMNS = ["section", "data_row", "actual", "predicted", "p_predicted", "p_actual", "raw", "text"]


def _error_rows(section: str, rows: np.ndarray, test: pd.DataFrame, evaluation: Evaluation) -> pd.DataFrame:
    names = np.asarray(evaluation.classes)
    actual, predicted = evaluation.y_true[rows], evaluation.y_pred[rows]
    return pd.DataFrame({
        "section": section,
        "data_row": rows + 1,  # 1 = the first data row of data/processed/test.csv
        "actual": names[actual],
        "predicted": names[predicted],
        "p_predicted": np.round(evaluation.proba[rows, predicted], PROBABILITY_DECIMALS),
        "p_actual": np.round(evaluation.proba[rows, actual], PROBABILITY_DECIMALS),
        "raw": test["raw"].to_numpy()[rows],
        "text": test["text"].to_numpy()[rows],
    }, columns=ERROR_COLUMNS)


def most_confident_errors(evaluation: Evaluation, count: int) -> np.ndarray:
    """Row positions of the ``count`` wrong predictions with the highest confidence; ties go to
    the earlier row, so the selection never depends on sort stability."""
    wrong = np.flatnonzero(~evaluation.correct)
    confidence = evaluation.confidence[wrong]
    order = np.lexsort((wrong, -confidence))
    return wrong[order][:count]


def confusion_cell_sample(evaluation: Evaluation, actual: int, predicted: int, count: int,
                          seed: int) -> np.ndarray:
    """Up to ``count`` rows of one confusion cell, sampled with a generator seeded by the cell
    itself: adding rows to one cell never changes the sample drawn from another."""
    cell = np.flatnonzero((evaluation.y_true == actual) & (evaluation.y_pred == predicted))
    if len(cell) <= count:
        return cell
    rng = np.random.default_rng([seed, actual, predicted])
    return np.sort(rng.choice(cell, size=count, replace=False))


def error_analysis(test: pd.DataFrame, evaluation: Evaluation, most_confident: int, per_cell: int,
                   seed: int) -> pd.DataFrame:
    """The most confident mistakes, then a sample of every (actual, predicted) cell."""
    parts = [_error_rows("most_confident_error", most_confident_errors(evaluation, most_confident),
                         test, evaluation)]
    k = len(evaluation.classes)
    for actual in range(k):
        for predicted in range(k):
            rows = confusion_cell_sample(evaluation, actual, predicted, per_cell, seed)
            if len(rows):
                parts.append(_error_rows("cell_sample", rows, test, evaluation))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------ dvclive
@dataclass(frozen=True)
class PlotFiles:
    """Where the plots beyond the confusion counts go (one file per class in the two dirs)."""

    confusion_normalized: Path
    roc_dir: Path
    precision_recall_dir: Path
    calibration: Path


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def class_file_stem(name: str) -> str:
    """A class name usable as a file name (labels are free text in user data)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "_"


def _plot_value(value):
    """Non-finite numbers as null (strict JSON), others to 5 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.5g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plot_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plot_value(v) for v in value]
    return value


# Curves are thinned to this many points: enough to draw, small enough for a pull-request diff.
MAX_CURVE_POINTS = 200


def _thin(rows: list, limit: int) -> list:
    """Evenly spaced rows including the first and the last (curves keep their end points)."""
    if len(rows) <= limit:
        return rows
    keep = np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))
    return [rows[i] for i in keep]


def _rows_json(rows: list) -> str:
    return "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]"


def compact_plot_json(data, thin: bool = False) -> str:
    """One row per line, numbers to 5 significant digits: dvclive's indented full-precision
    output is ~5x larger, and a one-line-per-row diff reads well in a pull request."""
    data = _plot_value(data)
    if isinstance(data, list):
        return _rows_json(_thin(data, MAX_CURVE_POINTS) if thin else data) + "\n"
    parts = [f"{json.dumps(key)}: " + (_rows_json(_thin(value, MAX_CURVE_POINTS) if thin else value)
                                      if isinstance(value, list) else json.dumps(value))
             for key, value in data.items()]
    return "{\n" + ",\n".join(parts) + "\n}\n"


def copy_as_strict_json(source: Path, target: Path, thin: bool = False) -> None:
    """Rewrite a dvclive JSON plot file compactly, non-finite numbers as null.

    sklearn's ``roc_curve`` puts ``inf`` as the first threshold and ``json.dump`` writes it as
    ``Infinity``, which strict JSON parsers (browsers, editors) reject."""
    data = json.loads(Path(source).read_text(encoding="utf-8"))
    with atomic_path(target) as tmp:
        tmp.write_text(compact_plot_json(data, thin=thin), encoding="utf-8")


def _copy_dir_as_strict_json(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for file in sorted(source.glob("*.json")) if source.is_dir() else []:
            copy_as_strict_json(file, tmp / file.name, thin=True)


def _class_file_stems(classes: list[str]) -> list[str]:
    stems = [class_file_stem(name) for name in classes]
    clashing = sorted({name for name, stem in zip(classes, stems, strict=True) if stems.count(stem) > 1})
    if clashing:
        raise EvaluationError(f"labels {clashing} map to the same plot file name under plots/roc/; "
                              "rename them in the data (letters, digits, _ . - are kept)")
    return stems


def _log_probability_plots(live: Live, evaluation: Evaluation, calibration_bins: int) -> None:
    stems = _class_file_stems(evaluation.classes)
    for i, name in enumerate(evaluation.classes):
        if not is_one_vs_rest_defined(evaluation.y_true, i):
            continue
        # One binary curve per class: dvclive's roc / precision_recall take binary targets only.
        target, score = (evaluation.y_true == i).astype(int), evaluation.proba[:, i]
        stem = stems[i]
        live.log_sklearn_plot("roc", target, score, name=f"roc/{stem}.json",
                              title=f"ROC: {name} vs rest", drop_intermediate=True)
        live.log_sklearn_plot("precision_recall", target, score, name=f"precision_recall/{stem}.json",
                              title=f"Precision-recall: {name} vs rest", drop_intermediate=True)
    # Reliability of the top label: is the model right as often as it is confident?
    correct, confidence = top_label_calibration_inputs(evaluation.proba, evaluation.y_true)
    live.log_sklearn_plot("calibration", correct.astype(int), confidence,
                          name="calibration.json", n_bins=calibration_bins, strategy="uniform")


def log_with_dvclive(metrics: dict, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                     metrics_file: Path, confusion_file: Path, *,
                     evaluation: Evaluation | None = None, plots: PlotFiles | None = None,
                     calibration_bins: int = 10) -> None:
    """Log through dvclive into a scratch directory, then move its files into place atomically
    under our layout (dvclive would otherwise write ``<dir>/metrics.json`` and ``<dir>/plots``).

    With ``evaluation`` and ``plots`` it also logs the normalised confusion matrix, the
    per-class ROC and precision-recall curves and the reliability curve."""
    # Imported here: the baselines stage uses this module's scoring and needs no dvclive.
    from dvclive import Live

    with tempfile.TemporaryDirectory(prefix="dvclive-") as scratch:
        with Live(dir=scratch, save_dvc_exp=False, dvcyaml=None, report=None) as live:
            for name, value in _flatten(metrics).items():
                live.log_metric(name, value, plot=False)
            names = np.asarray(classes)
            live.log_sklearn_plot("confusion_matrix", names[y_true], names[y_pred],
                                  name="confusion_matrix.json")
            if plots is not None and evaluation is not None:
                live.log_sklearn_plot("confusion_matrix", names[y_true], names[y_pred],
                                      name="confusion_matrix_normalized.json", normalized=True)
                _log_probability_plots(live, evaluation, calibration_bins)
        sklearn_dir = Path(live.plots_dir) / "sklearn"
        with atomic_path(metrics_file) as tmp:
            shutil.copyfile(live.metrics_file, tmp)
        copy_as_strict_json(sklearn_dir / "confusion_matrix.json", confusion_file)
        if plots is not None and evaluation is not None:
            copy_as_strict_json(sklearn_dir / "confusion_matrix_normalized.json",
                                plots.confusion_normalized)
            copy_as_strict_json(sklearn_dir / "calibration.json", plots.calibration)
            _copy_dir_as_strict_json(sklearn_dir / "roc", plots.roc_dir)
            _copy_dir_as_strict_json(sklearn_dir / "precision_recall", plots.precision_recall_dir)
