"""The featurize stage: TF-IDF fitted on the training split only, and the resampling plan."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from sentiment_pipeline.config import FeaturizeConfig, ResamplingConfig
from sentiment_pipeline.errors import ConfigError
from sentiment_pipeline.files import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

# Texts arrive normalised and space-separated (see text.py), so a token is any non-space run;
# this keeps "didn't" and "_url_" whole, which the default pattern would split.
TOKEN_PATTERN = r"\S+"


def build_vectorizer(config: FeaturizeConfig) -> TfidfVectorizer | FeatureUnion:
    """Word n-gram TF-IDF, joined by char_wb n-grams when ``featurize.char_ngrams`` is on."""
    shared = dict(lowercase=False, min_df=config.min_df, max_df=config.max_df,
                  max_features=config.max_features, sublinear_tf=config.sublinear_tf,
                  dtype=np.float64)
    word = TfidfVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=tuple(config.word_ngram_range),
                           **shared)
    if not config.char_ngrams:
        return word
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(config.char_ngram_range), **shared)
    return FeatureUnion([("word", word), ("char", char)])


def make_picklable_deterministic(vectorizer: TfidfVectorizer | FeatureUnion) -> None:
    """Drop ``_stop_words_id`` from fitted vectorizers so equal fits pickle to equal bytes.

    scikit-learn caches ``id(stop_words)`` there (a memory address, new in every process) only
    to skip re-validating the stop word list; without it the check simply runs again.
    """
    parts = [t for _, t in vectorizer.transformer_list] if isinstance(vectorizer, FeatureUnion) else [vectorizer]
    for part in parts:
        part.__dict__.pop("_stop_words_id", None)


def resampled_class_counts(counts: dict[str, int], config: ResamplingConfig) -> dict[str, int]:
    """Class counts a training fold will have after resampling.

    SMOTE with imbalanced-learn's default strategy grows every minority class to the size of
    the majority class; the other strategies leave counts unchanged (class_weight reweights).
    """
    if config.strategy != "smote":
        return dict(counts)
    smallest = min(counts.values())
    if smallest <= config.k_neighbors:
        raise ConfigError(
            f"featurize.resampling.k_neighbors={config.k_neighbors} needs more than that many "
            f"rows in every class of a training fold; the smallest class has {smallest} rows"
        )
    target = max(counts.values())
    return {label: target for label in counts}


@dataclass
class FeatureSet:
    """Sparse TF-IDF matrices with integer-encoded labels; ``classes[i]`` names label ``i``."""

    X_train: sp.csr_matrix
    y_train: np.ndarray
    X_test: sp.csr_matrix
    y_test: np.ndarray
    classes: list[str]

    FILES = ("X_train.npz", "y_train.npy", "X_test.npz", "y_test.npy", "classes.json")

    def save(self, directory: Path) -> None:
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            sp.save_npz(tmp / "X_train.npz", self.X_train, compressed=True)
            sp.save_npz(tmp / "X_test.npz", self.X_test, compressed=True)
            np.save(tmp / "y_train.npy", self.y_train)
            np.save(tmp / "y_test.npy", self.y_test)
            write_json(self.classes, tmp / "classes.json")

    @classmethod
    def load(cls, directory: Path) -> FeatureSet:
        return cls(
            X_train=sp.load_npz(directory / "X_train.npz").tocsr(),
            y_train=np.load(directory / "y_train.npy"),
            X_test=sp.load_npz(directory / "X_test.npz").tocsr(),
            y_test=np.load(directory / "y_test.npy"),
            classes=list(read_json(directory / "classes.json")),
        )


def encode_labels(train: pd.Series, test: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    classes = sorted(train.unique())
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise ConfigError(f"test split holds label(s) {unknown} that the training split lacks")
    index = {label: i for i, label in enumerate(classes)}
    return (train.map(index).to_numpy(np.int64), test.map(index).to_numpy(np.int64), classes)


def featurize(train: pd.DataFrame, test: pd.DataFrame, config: FeaturizeConfig):
    """Fit TF-IDF on ``train`` only; return the fitted vectorizer, features and a summary."""
    vectorizer = build_vectorizer(config)
    try:
        X_train = vectorizer.fit_transform(train["text"]).tocsr()
    except ValueError as exc:  # e.g. min_df/max_df leave no terms for this many texts
        raise ConfigError(
            f"TF-IDF cannot be fitted on {len(train)} training texts with featurize.min_df="
            f"{config.min_df}, max_df={config.max_df}: {exc}"
        ) from exc
    X_test = vectorizer.transform(test["text"]).tocsr()
    make_picklable_deterministic(vectorizer)
    y_train, y_test, classes = encode_labels(train["label"], test["label"])
    before = train["label"].value_counts().sort_index().to_dict()
    summary = {
        "n_features": int(X_train.shape[1]),
        "train_rows": int(X_train.shape[0]),
        "test_rows": int(X_test.shape[0]),
        "resampling": {
            "strategy": config.resampling.strategy,
            "k_neighbors": config.resampling.k_neighbors,
            "class_counts_before": before,
            "class_counts_after": resampled_class_counts(before, config.resampling),
        },
    }
    log.info("TF-IDF: %d features from %d training texts; resampling: %s",
             X_train.shape[1], X_train.shape[0], config.resampling.strategy)
    features = FeatureSet(X_train, y_train, X_test, y_test, classes)
    return vectorizer, features, summary
