"""Model families: each is a Pipeline (filter, resampler, classifier) plus its grid.

Classifier libraries are imported inside their factories, so a process that trains or loads
some families only (`train --family`, serving a linear model) does not pay for the others:
importing XGBoost alone costs about a second of start-up. imbalanced-learn likewise, only where
SMOTE is the resampler (0.4 s per process, most of it its imports of scikit-learn's test tools).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from sentiment_pipeline.core.config import FAMILY_GRIDS, ResamplingConfig
from sentiment_pipeline.core.errors import ConfigError


def calibrated_proba(proba: np.ndarray) -> np.ndarray:
    """The end of ``sklearn.calibration._CalibratedClassifier.predict_proba`` on the calibrators'
    columns (with two classes only column 1 is filled): the complement, or rows normalised to sum
    to one (uniform where all are 0), values a rounding error above 1 clipped. Shared by the sgd
    family and the compiled path's calibrated SVM, which must match scikit-learn bit for bit."""
    n_classes = proba.shape[1]
    if n_classes == 2:
        proba[:, 0] = 1.0 - proba[:, 1]
    else:
        denominator = np.sum(proba, axis=1)[:, np.newaxis]
        uniform_proba = np.full_like(proba, 1 / n_classes)
        proba = np.divide(proba, denominator, out=uniform_proba, where=denominator != 0)
    proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
    return proba


class NaiveBayes(ClassifierMixin, BaseEstimator):
    """Multinomial or complement naive Bayes, one estimator so the choice is a grid parameter."""

    def __init__(self, alpha: float = 1.0, fit_prior: bool = True, complement: bool = False):
        self.alpha = alpha
        self.fit_prior = fit_prior
        self.complement = complement

    def fit(self, X, y, sample_weight=None):
        from sklearn.naive_bayes import ComplementNB, MultinomialNB

        model = ComplementNB if self.complement else MultinomialNB
        self.model_ = model(alpha=self.alpha, fit_prior=self.fit_prior).fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def _per_class_weights(y, sample_weight) -> dict | None:
    """``{class: weight}`` from sample weights that are constant within each class (as the
    ``class_weight`` resampling strategy's balanced weights are)."""
    if sample_weight is None:
        return None
    y, sample_weight = np.asarray(y), np.asarray(sample_weight, dtype=float)
    weights = {}
    for label in np.unique(y):
        values = np.unique(sample_weight[y == label])
        if len(values) != 1:
            raise ConfigError("the linear_svm family takes sample weights that are constant within "
                              "each class (featurize.resampling.strategy: class_weight)")
        weights[label] = float(values[0])
    return weights


# liblinear's dual solver visits the rows in an order drawn from one random generator per
# process, seeded when a fit starts. Two fits in parallel threads would draw from it in turn
# and their results would depend on timing; fits hold this lock so each draws alone. The dual
# solver is worth it: 2.7x faster than the primal one on word+char TF-IDF, the same optimum.
_LIBLINEAR_RNG = threading.Lock()
# Families whose fits hold that lock: two of their searches in parallel threads would leave a
# core waiting, so the train stage runs one family's searches in turn (train._run_in_threads).
LOCKED_FAMILIES = frozenset({"linear_svm"})


class SerializedLinearSVC(LinearSVC):
    """``LinearSVC`` whose fits never overlap in this process: see ``_LIBLINEAR_RNG``."""

    def fit(self, X, y, sample_weight=None):
        with _LIBLINEAR_RNG:
            return super().fit(X, y, sample_weight=sample_weight)


class CalibratedLinearSVC(ClassifierMixin, BaseEstimator):
    """A linear SVM with probabilities from cross-validated calibration of its margins.

    The SVM itself has no ``predict_proba``; ROC, precision-recall and calibration plots
    need one, and calibrating inside every CV training fold keeps the CV estimate honest."""

    def __init__(self, C: float = 0.1, calibration: str = "sigmoid", calibration_folds: int = 3,
                 random_state: int | None = None):
        self.C = C
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        from sklearn.calibration import CalibratedClassifierCV

        # Class weights go to the SVM only. Weighted calibrators would learn the reweighted
        # class frequencies, and the probabilities would then be miscalibrated for real data.
        svm = SerializedLinearSVC(C=self.C, dual=True, random_state=self.random_state,
                                  class_weight=_per_class_weights(y, sample_weight))
        self.model_ = CalibratedClassifierCV(svm, method=self.calibration, cv=self.calibration_folds)
        self.model_.fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X):
        """The calibration folds' SVM margins, averaged."""
        margins = [member.estimator.decision_function(X) for member in self.model_.calibrated_classifiers_]
        return np.mean(margins, axis=0)

    def predict(self, X):
        # From the margins, not from argmax of the probabilities: calibration maps scores back
        # to the skewed class frequencies, which would undo the balanced sample weights the
        # SVM was trained with (as SVC(probability=True), predict and predict_proba may disagree).
        margins = self.decision_function(X)
        if margins.ndim == 1:
            return self.classes_[(margins > 0).astype(int)]
        return self.classes_[np.argmax(margins, axis=1)]

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def _logreg(seed: int) -> ClassifierMixin:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(random_state=seed)


def _naive_bayes(seed: int) -> ClassifierMixin:
    return NaiveBayes()


def _random_forest(seed: int) -> ClassifierMixin:
    from sentiment_pipeline.pipeline.forest import DenseRandomForest

    # One thread per model: the grid search already runs one model per core.
    return DenseRandomForest(random_state=seed, n_jobs=1)


def _xgboost(seed: int) -> ClassifierMixin:
    from xgboost import XGBClassifier

    return XGBClassifier(tree_method="hist", random_state=seed, n_jobs=1, verbosity=0)


def _linear_svm(seed: int) -> ClassifierMixin:
    return CalibratedLinearSVC(random_state=seed)


def _sgd(seed: int) -> ClassifierMixin:
    from sentiment_pipeline.pipeline.incremental import IncrementalSGDClassifier

    return IncrementalSGDClassifier(random_state=seed)


FAMILIES: dict[str, Callable[[int], ClassifierMixin]] = {
    "logreg": _logreg,
    "naive_bayes": _naive_bayes,
    "random_forest": _random_forest,
    "xgboost": _xgboost,
    "linear_svm": _linear_svm,
    "sgd": _sgd,
}
assert FAMILIES.keys() == FAMILY_GRIDS.keys()
# Families that learn block by block, so train.chunk_rows can stream their training matrix. Their
# pipelines keep every column (no chi-squared filter: it needs the whole matrix), and their fits
# take the rows' positions (``clf__row_ids``) so that a fold's fit is the streamed one.
STREAMING_FAMILIES = frozenset({"sgd"})


def build_classifier(family: str, seed: int) -> ClassifierMixin:
    try:
        factory = FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}") from None
    return factory(seed)


def build_pipeline(family: str, resampling: ResamplingConfig, seed: int, memory=None) -> Pipeline:
    """Feature filter, resampler, classifier.

    With SMOTE it is imbalanced-learn's Pipeline, which applies the resampler during ``fit``
    only, so inside cross-validation SMOTE sees training folds and never the validation fold;
    the chi-squared filter is fitted on the same training fold. Filtering first makes SMOTE's
    neighbour search cheaper. Without a sampler the resample step is a passthrough and
    scikit-learn's Pipeline does the same, without importing imbalanced-learn."""
    pipeline_class = Pipeline
    if resampling.strategy == "smote":
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import Pipeline as ImbPipeline

        pipeline_class = ImbPipeline
        sampler = SMOTE(k_neighbors=resampling.k_neighbors, random_state=seed)
    else:
        sampler = "passthrough"
    return pipeline_class(
        [
            ("select", "passthrough" if family in STREAMING_FAMILIES else SelectKBest(chi2, k="all")),
            ("resample", sampler),
            ("clf", build_classifier(family, seed)),
        ],
        memory=memory,
    )
