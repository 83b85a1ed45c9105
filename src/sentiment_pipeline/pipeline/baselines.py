"""The baselines stage: untrained lexicon scorers on the same test split as the model.

They answer "is the model worth it?": VADER (tuned for social-media text) and TextBlob (a
general-purpose polarity lexicon) need no training data, so any lead the model has over them is
what training bought. They read the original ``raw`` text, because both use case, punctuation
and emoticons ("GREAT!!!" scores higher than "great"), which cleaning removes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from sentiment_pipeline.core.config import BaselinesConfig
from sentiment_pipeline.pipeline.evaluate import encode_labels, score_predictions

log = logging.getLogger(__name__)

THREE_WAY = ["negative", "neutral", "positive"]
BINARY = ["negative", "positive"]


def vader_scores(texts: Iterable[str]) -> np.ndarray:
    """VADER's compound score in [-1, 1] for each text."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(text)["compound"] for text in texts], dtype=float)


def textblob_scores(texts: Iterable[str]) -> np.ndarray:
    """TextBlob's (pattern lexicon) polarity in [-1, 1] for each text."""
    from textblob import TextBlob

    return np.array([TextBlob(text).sentiment.polarity for text in texts], dtype=float)


def lexicon_label_set(labels: Iterable[str]) -> list[str] | None:
    """The label set a lexicon can predict for this data, or None when it cannot."""
    present = sorted(set(labels))
    return present if present in (THREE_WAY, BINARY) else None


def labels_from_scores(scores: np.ndarray, threshold: float, classes: list[str]) -> np.ndarray:
    """Polarity scores to label names.

    Three classes: score >= threshold is positive, <= -threshold negative, neutral in between.
    Two classes (no neutral): the sign decides; a zero score (no sentiment word found)
    counts as negative, so every text gets a label.
    """
    if classes == BINARY:
        return np.where(scores > 0, "positive", "negative")
    if threshold == 0:
        # With no neutral band, only an exact zero is neutral (``>=`` would call it positive).
        return np.select([scores > 0, scores < 0], ["positive", "negative"], "neutral")
    return np.select([scores >= threshold, scores <= -threshold], ["positive", "negative"], "neutral")


def describe_rule(score_name: str, threshold: float, classes: list[str]) -> str:
    """How scores became labels, in words for the model card."""
    if classes == BINARY:
        return f"{score_name} > 0 positive, otherwise negative (two classes: no neutral band)"
    if threshold == 0:
        return f"{score_name} > 0 positive, < 0 negative, exactly 0 neutral"
    return (f"{score_name} >= {threshold:g} positive, <= {-threshold:g} negative, "
            "neutral in between")


SCORERS: dict[str, tuple[str, Callable[[Iterable[str]], np.ndarray]]] = {
    "vader": ("compound", vader_scores),
    "textblob": ("polarity", textblob_scores),
}


def thresholds(config: BaselinesConfig) -> dict[str, float]:
    return {"vader": config.vader_threshold, "textblob": config.textblob_threshold}


def baseline_rules(config: BaselinesConfig, labels: Iterable[str]) -> dict[str, str]:
    classes = lexicon_label_set(labels)
    if classes is None:
        return {}
    return {name: describe_rule(score_name, thresholds(config)[name], classes)
            for name, (score_name, _) in SCORERS.items()}


def not_applicable(labels: Iterable[str]) -> dict:
    return {"applicable": False,
            "reason": (f"labels {sorted(set(labels))} are not {BINARY} or {THREE_WAY}; a polarity "
                       "lexicon cannot predict them")}


def score_baselines(test: pd.DataFrame, config: BaselinesConfig) -> dict:
    """``{name: scores}`` with the model's metrics (``score_predictions``) for each lexicon,
    or ``{name: {"applicable": false, "reason": ...}}`` when the labels are not sentiments."""
    classes = lexicon_label_set(test["label"])
    if classes is None:
        log.warning("lexicon baselines skipped: labels %s", sorted(set(test["label"])))
        return {name: not_applicable(test["label"]) for name in SCORERS}
    y_true = encode_labels(test["label"], classes, "the test split")
    index = {label: i for i, label in enumerate(classes)}
    results = {}
    for name, (_, scorer) in SCORERS.items():
        predicted = labels_from_scores(scorer(test["raw"]), thresholds(config)[name], classes)
        y_pred = np.array([index[label] for label in predicted], dtype=np.int64)
        results[name] = score_predictions(y_true, y_pred, classes)
        log.info("%s: accuracy %.4f, macro-F1 %.4f", name, results[name]["accuracy"],
                 results[name]["f1_macro"])
    return results
