"""The ensemble family: other families' best candidates combined by soft voting or stacking.

Scored on the same K folds as every family's search, from out-of-fold probabilities: each
member is refitted on the training folds with the hyperparameters its own search chose and
predicts the validation fold. Stacking's meta-learner is fitted on out-of-fold probabilities
only (never on a member's predictions for rows it was fitted on), and in CV on the other folds'
rows. The members' hyperparameters were chosen by CV on these folds, so the ensemble's CV
score is as optimistic as the members' own best scores, plus what choosing among its own
combinations (methods, prior powers, member weights) on the same folds adds.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from sentiment_pipeline.core.config import EnsembleConfig, TrainConfig
from sentiment_pipeline.core.errors import DataError

log = logging.getLogger(__name__)

# Probabilities are clipped here before the log: a member certain of a class must not give
# the meta-learner an infinite feature.
_MIN_PROBABILITY = 1e-6


@dataclass(frozen=True)
class Combination:
    """One candidate of the ensemble's grid."""

    method: str
    prior_power: float | None = None  # soft_vote
    meta_C: float | None = None  # stacking
    weights: tuple[float, ...] | None = None  # soft_vote, in members order; None: all equal
    class_scale: tuple[float, ...] | None = None  # soft_vote, in class order; None: no scaling

    def params(self) -> dict:
        if self.method == "stacking":
            return {"method": self.method, "meta_C": self.meta_C}
        return {"method": self.method, "prior_power": self.prior_power, "weights": _listed(self.weights),
                "class_scale": _listed(self.class_scale)}


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


def weight_vectors(values: list[float], n_members: int) -> list[tuple[float, ...] | None]:
    """Every assignment of ``values`` to the members (or, for ``class_scale``, to the classes),
    in product order, one per distinct vote: proportional assignments ((2, 2) and (1, 1))
    decide the same, so only the first is kept. Equal weights are None (no weighting). A
    weight of 0 leaves a member out of the vote; all members at 0 is no vote and skipped."""
    found, seen = [], set()
    for weights in itertools.product(values, repeat=n_members):
        if max(weights) <= 0:
            continue
        ratio = tuple(round(w / max(weights), 9) for w in weights)
        if ratio not in seen:
            seen.add(ratio)
            found.append(None if len(set(ratio)) == 1 else tuple(float(w) for w in weights))
    return found


def combinations(config: EnsembleConfig, n_classes: int) -> list[Combination]:
    """Every candidate of ``train.ensemble`` for ``n_classes`` classes, in the order params.yaml
    lists them."""
    found = []
    scales = weight_vectors(config.class_scale, n_classes)
    for method in config.method:
        if method == "soft_vote":
            found += [Combination(method, prior_power=power, weights=weights, class_scale=scale)
                      for power in config.prior_power
                      for weights in weight_vectors(config.member_weights, len(config.members))
                      for scale in scales]
        else:
            found += [Combination(method, meta_C=c) for c in config.meta_C]
    return found


def class_shares(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(y, minlength=n_classes) / len(y)


def soft_vote(probas: list[np.ndarray], shares: np.ndarray, prior_power: float,
              weights: tuple[float, ...] | None = None,
              class_scale: tuple[float, ...] | None = None) -> np.ndarray:
    """The members' mean probability per class (weighted by ``weights``), divided by the class's
    training share to ``prior_power`` (0 keeps the training prior, 1 treats classes as
    balanced), multiplied by ``class_scale`` (a per-class threshold) and renormalised."""
    mean = np.mean(probas, axis=0) if weights is None else np.average(probas, axis=0, weights=weights)
    mean = mean / shares ** prior_power
    if class_scale is not None:
        mean = mean * np.asarray(class_scale)
    return mean / mean.sum(axis=1, keepdims=True)


def stacking_features(probas: list[np.ndarray]) -> np.ndarray:
    return np.log(np.clip(np.hstack(probas), _MIN_PROBABILITY, 1.0))


def fit_meta_learner(probas: list[np.ndarray], y: np.ndarray, meta_C: float, seed: int | None):
    from sklearn.linear_model import LogisticRegression

    meta = LogisticRegression(C=meta_C, class_weight="balanced", max_iter=1000, random_state=seed)
    return meta.fit(stacking_features(probas), y)


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Member estimators (each ``select -> classifier``) whose probabilities are combined.

    ``fit`` fits clones of the members on X and, for stacking, the meta-learner on their
    out-of-fold probabilities from ``cv`` stratified folds. The ensemble stage builds the
    same object from members already fitted by their own stages (``from_fitted``)."""

    def __init__(self, members=(), method: str = "soft_vote", prior_power: float = 0.0,
                 meta_C: float = 1.0, weights=None, class_scale=None, cv: int = 5,
                 random_state: int | None = None):
        self.members = members
        self.method = method
        self.prior_power = prior_power
        self.meta_C = meta_C
        self.weights = weights
        self.class_scale = class_scale
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y)
        params = {} if sample_weight is None else {"clf__sample_weight": np.asarray(sample_weight)}
        oof = None
        if self.method == "stacking":
            folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            oof = [cross_val_predict(clone(m), X, y, cv=folds, method="predict_proba", params=params)
                   for m in self.members]
        fitted = [clone(m).fit(X, y, **params) for m in self.members]
        return self._set_fitted(fitted, y, oof)

    @classmethod
    def from_fitted(cls, members: list, combination: Combination, y: np.ndarray,
                    oof: list[np.ndarray], seed: int) -> EnsembleClassifier:
        """The ensemble of members fitted on all of ``y``'s rows; ``oof`` are their out-of-fold
        probabilities for those rows (stacking's training data). Members whose weight is 0 are
        left out: they would cost predictions and change no vote."""
        params = combination.params()
        if combination.weights is not None and min(combination.weights) == 0:
            voting = [i for i, w in enumerate(combination.weights) if w > 0]
            members, oof = [members[i] for i in voting], [oof[i] for i in voting]
            weights = [combination.weights[i] for i in voting]
            params["weights"] = None if len(set(weights)) == 1 else weights
        ensemble = cls(members=members, random_state=seed, **params)
        return ensemble._set_fitted(members, np.asarray(y), oof)

    def _set_fitted(self, fitted: list, y: np.ndarray, oof: list[np.ndarray] | None):
        if self.method not in ("soft_vote", "stacking"):
            raise ValueError(f"method must be 'soft_vote' or 'stacking', got {self.method!r}")
        if self.weights is not None and len(self.weights) != len(fitted):
            raise ValueError(f"weights must give one weight per member ({len(fitted)}), got {list(self.weights)}")
        self.members_ = fitted
        self.classes_ = np.asarray(fitted[0].classes_)
        if self.class_scale is not None and len(self.class_scale) != len(self.classes_):
            raise ValueError(f"class_scale must give one factor per class ({len(self.classes_)}), "
                             f"got {list(self.class_scale)}")
        self.shares_ = class_shares(np.searchsorted(self.classes_, y), len(self.classes_))
        # fit and from_fitted pass the members' out-of-fold probabilities whenever the method is stacking
        self.meta_ = (fit_meta_learner(cast(list[np.ndarray], oof), np.searchsorted(self.classes_, y), self.meta_C,
                                       self.random_state)
                      if self.method == "stacking" else None)
        return self

    def predict_proba(self, X):
        return self.combine([member.predict_proba(X) for member in self.members_])

    def combine(self, probas: list[np.ndarray]) -> np.ndarray:
        """The ensemble's probabilities from its members' (in ``members_`` order)."""
        if self.meta_ is not None:
            return self.meta_.predict_proba(stacking_features(probas))
        return soft_vote(probas, self.shares_, self.prior_power, self.weights, self.class_scale)

    def predict(self, X):
        return self.predict_with_proba(X)[0]

    def predict_with_proba(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` and ``predict_proba`` from one pass through the members (serving)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)], proba


def prediction_pipeline(candidate) -> Pipeline:
    """A family's fitted candidate without its resampling step, which acts during fit only."""
    return Pipeline([("select", candidate.named_steps["select"]), ("clf", candidate.named_steps["clf"])])


def _stacking_scores(combination: Combination, oof: list[np.ndarray], y: np.ndarray, folds: list,
                     n_classes: int, seed: int) -> list[float]:
    assert combination.meta_C is not None  # every stacking combination has one
    scores = []
    for train, valid in folds:
        meta = fit_meta_learner([p[train] for p in oof], y[train], combination.meta_C, seed)
        combined = meta.predict_proba(stacking_features([p[valid] for p in oof]))
        scores.append(macro_f1(y[valid], np.argmax(combined, axis=1), n_classes))
    return scores


@dataclass(frozen=True)
class _Fold:
    """A validation fold as the soft votes read it: each member's probabilities of its rows,
    the training rows' class shares and the true classes."""

    probas: list[np.ndarray]
    shares: np.ndarray
    y: np.ndarray


def _folds_for_votes(oof: list[np.ndarray], y: np.ndarray, folds: list, n_classes: int) -> list[_Fold]:
    return [_Fold([p[valid] for p in oof], class_shares(y[train], n_classes), y[valid]) for train, valid in folds]


def _soft_vote_scores(group: list[Combination], folds: list[_Fold], n_classes: int) -> list[list[float]]:
    """Fold scores of soft votes that differ only in ``class_scale``: the weighted mean is
    computed once per fold and every scaling of it at once, with the operations of
    :func:`soft_vote` in its order, so each vote is bit for bit the one served (tested). The
    default grid scores 5,275 votes: one at a time they took 8 s, grouped 1.5 s."""
    first = group[0]
    scales = np.array([np.ones(n_classes) if c.class_scale is None else c.class_scale for c in group])
    scores: list[list[float]] = [[] for _ in group]
    for fold in folds:
        probas = fold.probas
        mean = np.mean(probas, axis=0) if first.weights is None else np.average(probas, axis=0, weights=first.weights)
        mean = np.ascontiguousarray((mean / fold.shares ** first.prior_power).T)  # (classes, rows)
        # one (votes, rows) array per class: x * 1.0 is x, so unscaled votes are unchanged
        per_class = [scales[:, k, None] * mean[k][None, :] for k in range(n_classes)]
        total = per_class[0].copy()  # added left to right, as NumPy sums a short last axis
        for k in range(1, n_classes):
            total += per_class[k]
        best, predicted = per_class[0] / total, np.zeros(total.shape, dtype=np.intp)
        for k in range(1, n_classes):  # argmax: the first of equal maxima wins, as np.argmax
            share = per_class[k] / total
            higher = share > best
            predicted[higher], best = k, np.where(higher, share, best)
        for i, score in enumerate(_macro_f1_rows(fold.y, predicted, n_classes)):
            scores[i].append(score)
    return scores


def _macro_f1_rows(y_true: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[float]:
    """:func:`macro_f1` of every row of ``predicted`` against ``y_true``, from one bincount;
    rows where a class is neither true nor predicted go through :func:`macro_f1` itself."""
    rows = len(predicted)
    cells = np.arange(rows)[:, None] * n_classes * n_classes + y_true[None, :] * n_classes + predicted
    confusion = np.bincount(cells.ravel(), minlength=rows * n_classes * n_classes).reshape(rows, n_classes, n_classes)
    true_positive = np.diagonal(confusion, axis1=1, axis2=2)
    both = confusion.sum(axis=2) + confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * true_positive / both
    scores = np.mean(f1, axis=1)
    return [float(scores[i]) if (both[i] > 0).all() else macro_f1(y_true, predicted[i], n_classes)
            for i in range(rows)]


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """scikit-learn's ``f1_score(average="macro")`` of class indices, from one bincount: the
    ensemble's grid scores hundreds of combinations per fold, and the general function costs
    ~3 ms a call."""
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)
    true_positive, actual, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    present = (actual + predicted) > 0  # as scikit-learn: the labels either side holds
    f1 = 2 * true_positive[present] / (actual[present] + predicted[present])
    return float(np.mean(f1))


def weights_label(weights: tuple[float, ...] | None, none: str = "equal") -> str:
    """The CV table's and model card's spelling, in members (or class) order: ``2:2:1:1``, or
    ``none`` for no weighting."""
    return none if weights is None else ":".join(f"{w:g}" for w in weights)


@dataclass
class EnsembleResult:
    estimator: EnsembleClassifier
    cv_table: pd.DataFrame
    summary: dict
    timing: dict  # measured seconds, apart from the summary (they differ run to run)


def search_ensemble(config: EnsembleConfig, train: TrainConfig, candidates: list, oof: list[np.ndarray],
                    y: np.ndarray) -> EnsembleResult:
    """Score every combination of ``config`` by CV on the members' out-of-fold probabilities
    (``oof``, from their own searches, on the folds of ``train``) and build the best one from
    the members' ``candidates``, fitted on all rows by their stages."""
    started = time.perf_counter()
    y = np.asarray(y)
    if any(p.shape[0] != len(y) for p in oof):
        raise DataError("train.ensemble.members: out-of-fold probabilities do not match the training "
                        "split (re-run the members' train stages: dvc repro)")
    n_classes = int(y.max()) + 1
    folds = list(StratifiedKFold(train.cv_folds, shuffle=True, random_state=train.seed).split(np.zeros(len(y)), y))
    found = combinations(config, n_classes)
    groups: dict[tuple, list[Combination]] = {}
    for combination in found:
        if combination.method == "soft_vote":
            groups.setdefault((combination.prior_power, combination.weights), []).append(combination)
    fold_scores: dict[Combination, list[float]] = {}
    vote_folds = _folds_for_votes(oof, y, folds, n_classes)
    for group in groups.values():
        fold_scores.update(zip(group, _soft_vote_scores(group, vote_folds, n_classes), strict=True))
    rows = []
    for combination in found:
        scores = fold_scores.get(combination) or _stacking_scores(combination, oof, y, folds, n_classes, train.seed)
        rows.append({"method": combination.method, "prior_power": combination.prior_power,
                     "meta_C": combination.meta_C, "weights": weights_label(combination.weights),
                     "class_scale": (weights_label(combination.class_scale, none="none")
                                     if combination.method == "soft_vote" else None),
                     **{f"split{i}_f1_macro": s for i, s in enumerate(scores)},
                     "mean_f1_macro": float(np.mean(scores)), "std_f1_macro": float(np.std(scores))})
    table = pd.DataFrame(rows)
    # ranked as GridSearchCV ranks: ties share the smaller rank, and the first listed wins
    table["rank"] = table["mean_f1_macro"].rank(method="min", ascending=False).astype(int)
    best_index = int(np.argmax(table["mean_f1_macro"].to_numpy()))
    best = found[best_index]
    members = [prediction_pipeline(c) for c in candidates]
    estimator = EnsembleClassifier.from_fitted(members, best, y, oof, train.seed)
    voting = [m for i, m in enumerate(config.members) if best.weights is None or best.weights[i] > 0]
    member_scores = {m: float(f1_score(y, np.argmax(p, axis=1), average="macro"))
                     for m, p in zip(config.members, oof, strict=True)}
    summary = {
        "family": "ensemble",
        "cv_f1_macro_mean": float(table["mean_f1_macro"][best_index]),
        "cv_f1_macro_std": float(table["std_f1_macro"][best_index]),
        "n_candidates": len(found),
        "cv_folds": train.cv_folds,
        # the members in the vote (a weight of 0 leaves one out), their weights in that order
        "best_params": {**best.params(), **({"weights": _listed(estimator.weights)}
                                            if best.method == "soft_vote" else {}), "members": voting},
        # the CV table's weights are in this order, 0 for a member left out of the vote
        "listed_members": list(config.members),
        # each member's out-of-fold macro-F1 from the argmax of its probabilities (the linear
        # SVM predicts from its margins instead, so its own CV score differs)
        "member_oof_f1_macro": member_scores,
    }
    # nothing is fitted but stacking's meta-learner: the members' fits are their searches'
    timing = {"search_seconds": round(time.perf_counter() - started, 2), "mean_fit_seconds": 0.0,
              "best_fit_seconds": 0.0, "refit_seconds": 0.0, "fits": 0}
    table = table.sort_values(["rank"], kind="stable").reset_index(drop=True)
    log.info("ensemble: best CV macro-F1 %.4f +/- %.4f with %s", summary["cv_f1_macro_mean"],
             summary["cv_f1_macro_std"], summary["best_params"])
    return EnsembleResult(estimator, table, summary, timing)
