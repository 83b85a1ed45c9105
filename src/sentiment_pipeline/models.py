"""Model families: each is an imbalanced-learn Pipeline (resampler, classifier) plus its grid."""

from __future__ import annotations

from collections.abc import Callable

from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from sklearn.base import ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from xgboost import XGBClassifier

from sentiment_pipeline.config import FAMILY_GRIDS, ResamplingConfig
from sentiment_pipeline.errors import ConfigError


def _logreg(seed: int) -> ClassifierMixin:
    return LogisticRegression(random_state=seed)


def _naive_bayes(seed: int) -> ClassifierMixin:
    return MultinomialNB()


def _random_forest(seed: int) -> ClassifierMixin:
    # One thread per model: the grid search already runs one model per core.
    return RandomForestClassifier(random_state=seed, n_jobs=1)


def _xgboost(seed: int) -> ClassifierMixin:
    return XGBClassifier(tree_method="hist", random_state=seed, n_jobs=1, verbosity=0)


FAMILIES: dict[str, Callable[[int], ClassifierMixin]] = {
    "logreg": _logreg,
    "naive_bayes": _naive_bayes,
    "random_forest": _random_forest,
    "xgboost": _xgboost,
}
assert FAMILIES.keys() == FAMILY_GRIDS.keys()


def build_classifier(family: str, seed: int) -> ClassifierMixin:
    try:
        factory = FAMILIES[family]
    except KeyError:
        raise ConfigError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}") from None
    return factory(seed)


def build_pipeline(family: str, resampling: ResamplingConfig, seed: int, memory=None) -> Pipeline:
    """Feature filter, resampler, classifier.

    imbalanced-learn applies the resampler during ``fit`` only, so inside cross-validation
    SMOTE sees training folds and never the validation fold; the chi-squared filter is fitted
    on the same training fold. Filtering first makes SMOTE's neighbour search cheaper."""
    sampler = (
        SMOTE(k_neighbors=resampling.k_neighbors, random_state=seed)
        if resampling.strategy == "smote"
        else "passthrough"
    )
    return Pipeline(
        [
            ("select", SelectKBest(chi2, k="all")),
            ("resample", sampler),
            ("clf", build_classifier(family, seed)),
        ],
        memory=memory,
    )
