"""The preprocess stage: normalise, deduplicate, then split (in that order)."""

from __future__ import annotations

import hashlib
import math
import logging
from dataclasses import dataclass, field

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiment_pipeline.config import PreprocessConfig
from sentiment_pipeline.errors import DataError
from sentiment_pipeline.text import TextNormalizer, build_stopwords

log = logging.getLogger(__name__)


@dataclass
class PreprocessResult:
    train: pd.DataFrame
    test: pd.DataFrame
    report: dict = field(default_factory=dict)
    class_distribution: list[dict] = field(default_factory=list)


def _class_counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


def length_percentiles(texts: pd.Series) -> dict[str, dict[str, float]]:
    """5th/50th/95th percentile and maximum length of the cleaned texts, in chars and words."""
    lengths = {"chars": texts.str.len(), "words": texts.str.count(" ") + 1}
    return {unit: {"p5": float(v.quantile(0.05)), "p50": float(v.quantile(0.5)),
                   "p95": float(v.quantile(0.95)), "max": int(v.max())}
            for unit, v in lengths.items()}


def class_distribution_rows(stages: dict[str, pd.Series]) -> list[dict]:
    """Rows for the class-distribution bar plot: one per (stage, label)."""
    return [{"stage": stage, "label": label, "count": count, "group": f"{stage}: {label}"}
            for stage, labels in stages.items() for label, count in _class_counts(labels).items()]


def clean_texts(texts: pd.Series, normalizer: TextNormalizer) -> pd.Series:
    return texts.map(normalizer)


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop rows whose raw text, then whose cleaned text, was seen before (first one wins).

    Duplicates must go before the split: a copy on each side would leak test data into training.
    """
    counts: dict[str, int] = {}
    exact = frame.duplicated(subset="raw", keep="first")
    counts["exact_duplicates"] = int(exact.sum())
    frame = frame[~exact]
    normalised = frame.duplicated(subset="text", keep="first")
    counts["normalised_duplicates"] = int(normalised.sum())
    labels_per_text = frame.groupby("text", sort=False)["label"].nunique()
    counts["duplicate_groups_with_conflicting_labels"] = int((labels_per_text > 1).sum())
    return frame[~normalised], counts


def stratified_split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    class_counts = frame["label"].value_counts()
    if len(class_counts) < 2:
        raise DataError(
            f"only the label {class_counts.index[0]!r} is left after dropping empty texts and "
            "duplicates (the other labels' texts cleaned to nothing or repeated texts seen "
            "first under this label); a classifier needs at least two classes"
        )
    too_small = class_counts[class_counts < 2]
    if len(too_small):
        raise DataError(
            f"label(s) {sorted(too_small.index)} have fewer than 2 rows after deduplication; "
            "a stratified train/test split needs at least 2 per label"
        )
    n_test = math.ceil(test_size * len(frame))  # as train_test_split computes it
    if n_test < len(class_counts) or len(frame) - n_test < len(class_counts):
        raise DataError(
            f"{len(frame)} rows cannot be split with preprocess.test_size={test_size} so that "
            f"train and test both hold each of the {len(class_counts)} labels"
        )
    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame["label"], random_state=seed
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def preprocess(raw: pd.DataFrame, config: PreprocessConfig) -> PreprocessResult:
    """Clean the raw (text, label) table and split it into train and test sets."""
    stopwords = build_stopwords(config.stopwords)
    normalizer = TextNormalizer(config.cleaning, stopwords)
    frame = pd.DataFrame({"text": clean_texts(raw["text"], normalizer), "label": raw["label"],
                          "raw": raw["text"]})
    empty = frame["text"] == ""
    frame = frame[~empty]
    frame, dup_counts = deduplicate(frame)
    if frame.empty:
        raise DataError(
            f"no text is left after cleaning all {len(raw)} rows; check preprocess.cleaning "
            "and preprocess.stopwords"
        )
    train, test = stratified_split(frame, config.test_size, config.seed)
    report = {
        "rows_in": len(raw),
        "dropped": {"empty_after_cleaning": int(empty.sum()), **dup_counts},
        "rows_out": len(frame),
        "train_rows": len(train),
        "test_rows": len(test),
        "class_counts": {
            "raw": _class_counts(raw["label"]),
            "deduplicated": _class_counts(frame["label"]),
            "train": _class_counts(train["label"]),
            "test": _class_counts(test["label"]),
        },
        "text_length": length_percentiles(frame["text"]),
        "stopwords": {
            "count": len(stopwords),
            "md5": hashlib.md5("\n".join(sorted(stopwords)).encode()).hexdigest(),  # noqa: S324
        },
    }
    log.info("%d rows in, %d kept (%s dropped), train %d / test %d", len(raw), len(frame),
             report["dropped"], len(train), len(test))
    distribution = class_distribution_rows({"raw": raw["label"], "deduplicated": frame["label"],
                                            "train": train["label"], "test": test["label"]})
    return PreprocessResult(train=train, test=test, report=report, class_distribution=distribution)
