"""Accuracy without labels, and with them where feedback exists.

The estimate is confidence-based performance estimation (CBPE, as NannyML calls it): if the
probabilities are calibrated, a prediction whose label got probability ``p`` is right with
probability ``p``, so the expected accuracy of a window is the mean of those probabilities, and
each class's expected true/false positives and false negatives give an expected F1. It is
written here rather than taken from NannyML because it is a few lines of NumPy, and NannyML
pins older pandas/scikit-learn than this project. Plain CBPE assumes P(label | text) is what it was in
training, which a change of class balance breaks (under label shift it overestimates accuracy
by up to 0.06 in tests/test_monitoring.py). So the probabilities are first adapted to the
window's class balance, estimated by EM (Saerens, Latinne & Decaestecker, 2002: reweight by
new prior / training prior, renormalise, re-estimate the prior as the mean, repeat), and CBPE
runs on the adapted probabilities; the same test measures its error at most 0.046,
always on the low (cautious) side.
"""

from __future__ import annotations

import numpy as np


def _check_shapes(probabilities: np.ndarray, predicted: np.ndarray) -> None:
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must be (n_rows, n_classes), got shape {probabilities.shape}")
    if predicted.shape != (probabilities.shape[0],):
        raise ValueError(f"predicted must hold one class index per row ({probabilities.shape[0]}), "
                         f"got shape {predicted.shape}")
    if len(predicted) and (predicted.min() < 0 or predicted.max() >= probabilities.shape[1]):
        raise ValueError(f"predicted holds class indices outside 0..{probabilities.shape[1] - 1}")


def expected_accuracy(probabilities: np.ndarray, predicted: np.ndarray) -> float:
    """Mean probability the model gave the label it predicted."""
    probabilities, predicted = np.asarray(probabilities, dtype=float), np.asarray(predicted)
    _check_shapes(probabilities, predicted)
    if not len(predicted):
        return float("nan")
    return float(probabilities[np.arange(len(predicted)), predicted].mean())


def expected_f1_per_class(probabilities: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Expected F1 of each class: TP = sum of p_c over rows predicted c, FP = sum of 1 - p_c over
    the same rows, FN = sum of p_c over the other rows."""
    probabilities, predicted = np.asarray(probabilities, dtype=float), np.asarray(predicted)
    _check_shapes(probabilities, predicted)
    n_classes = probabilities.shape[1]
    scores = np.zeros(n_classes)
    for c in range(n_classes):
        chosen = predicted == c
        tp = probabilities[chosen, c].sum()
        fp = (1 - probabilities[chosen, c]).sum()
        fn = probabilities[~chosen, c].sum()
        denominator = 2 * tp + fp + fn
        scores[c] = 2 * tp / denominator if denominator > 0 else 0.0
    return scores


def estimate(probabilities: np.ndarray, predicted: np.ndarray) -> dict:
    """CBPE estimate of accuracy and macro-F1 for a window of predictions."""
    per_class = expected_f1_per_class(probabilities, predicted)
    return {"accuracy": expected_accuracy(probabilities, predicted),
            "f1_macro": float(per_class.mean()) if len(per_class) else float("nan"),
            "rows": int(len(predicted))}


def realized(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict:
    """Accuracy and macro-F1 where labels exist (feedback), with their count."""
    from sklearn.metrics import f1_score

    true, predicted = np.asarray(true), np.asarray(predicted)
    if true.shape != predicted.shape:
        raise ValueError(f"true {true.shape} and predicted {predicted.shape} differ in shape")
    if not len(true):
        return {"accuracy": None, "f1_macro": None, "rows": 0}
    return {"accuracy": float(np.mean(true == predicted)),
            "f1_macro": float(f1_score(true, predicted, labels=list(range(n_classes)), average="macro",
                                       zero_division=0)),
            "rows": int(len(true))}


def adapt_to_window_prior(probabilities: np.ndarray, training_prior: np.ndarray, max_iter: int = 1000,
                          tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities adapted to the window's class balance, and that balance, by EM
    (Saerens et al. 2002). ``training_prior`` is the balance the probabilities are calibrated
    to: the mean probability on held-out data like the training data (for a class-weighted
    model that is not the label frequency). A class is never given probability 0."""
    probabilities = np.asarray(probabilities, dtype=float)
    prior = np.asarray(training_prior, dtype=float)
    if probabilities.ndim != 2 or prior.shape != (probabilities.shape[1],):
        raise ValueError(f"training_prior needs one share per class ({probabilities.shape[-1]}), got shape {prior.shape}")
    if np.any(prior <= 0):
        raise ValueError("training_prior must be positive for every class")
    prior = prior / prior.sum()
    if not len(probabilities):
        return probabilities, prior

    def adapted(window_prior: np.ndarray) -> np.ndarray:
        weighted = probabilities * (window_prior / prior)
        totals = weighted.sum(axis=1, keepdims=True)
        return np.divide(weighted, totals, out=np.full_like(weighted, 1 / len(prior)), where=totals > 0)

    window_prior = prior
    for _ in range(max_iter):
        updated = np.maximum(adapted(window_prior).mean(axis=0), 1e-6)
        updated /= updated.sum()
        converged = np.abs(updated - window_prior).max() < tol
        window_prior = updated
        if converged:
            break
    return adapted(window_prior), window_prior
