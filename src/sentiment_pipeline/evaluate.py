"""The evaluate stage: score the selected model on the held-out test split with dvclive."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from dvclive import Live
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from sentiment_pipeline.files import atomic_path


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


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def log_with_dvclive(metrics: dict, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                     metrics_file: Path, confusion_file: Path) -> None:
    """Log through dvclive into a scratch directory, then move its files into place atomically
    under our layout (dvclive would otherwise write ``<dir>/metrics.json`` and ``<dir>/plots``)."""
    with tempfile.TemporaryDirectory(prefix="dvclive-") as scratch:
        with Live(dir=scratch, save_dvc_exp=False, dvcyaml=None, report=None) as live:
            for name, value in _flatten(metrics).items():
                live.log_metric(name, value, plot=False)
            names = np.asarray(classes)
            live.log_sklearn_plot("confusion_matrix", names[y_true], names[y_pred],
                                  name="confusion_matrix.json")
        produced = {
            Path(live.metrics_file): metrics_file,
            Path(live.plots_dir) / "sklearn" / "confusion_matrix.json": confusion_file,
        }
        for source, target in produced.items():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
