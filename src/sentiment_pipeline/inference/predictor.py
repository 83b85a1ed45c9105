"""One inference path for batch files and the API: raw text -> the run's cleaning -> the model.

Labels come from the model's own ``predict`` and confidence is the probability it gave that
label, computed by the same functions ``evaluate`` uses, so what is served is what was measured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.files import read_json
from sentiment_pipeline.inference.artifacts import VerifiedModel, verify_model
from sentiment_pipeline.pipeline.evaluate import in_class_order, predicted_probabilities, top_label_confidence
from sentiment_pipeline.pipeline.text import TextNormalizer, build_stopwords

log = logging.getLogger(__name__)

TEST_SCORES = ("accuracy", "f1_macro", "f1_weighted", "roc_auc_macro", "ece")


@dataclass(frozen=True)
class Predictions:
    """Predictions for a batch of texts, as arrays (row ``i`` for text ``i``)."""

    classes: list[str]
    label_index: np.ndarray  # int, into ``classes``
    confidence: np.ndarray  # the probability of the predicted label
    probabilities: np.ndarray  # (n_texts, n_classes)
    cleaned_length: np.ndarray  # characters left after cleaning; 0: the model saw no words

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.label_index]

    def __len__(self) -> int:
        return len(self.label_index)


def resampling_chosen(card: dict) -> dict[str, str]:
    """Per family in the served model, the resampling its search chose by CV (SMOTE or class
    weights): the selected family's, or each ensemble member's."""
    families = [{"family": card.get("family"), "params": card.get("params", {})}]
    if card.get("ensemble"):
        families = card["ensemble"].get("members", [])
    return {str(f["family"]): str(f["params"]["resampling"]) for f in families
            if isinstance(f.get("params"), dict) and "resampling" in f["params"]}


def model_metadata(verified: VerifiedModel, root: Path) -> dict:
    """What a client or an operator needs to know about the served model."""
    card = verified.card
    test_file = root / paths.TEST_METRICS
    test = read_json(test_file) if test_file.is_file() else {}
    return {
        "version": verified.version,
        "family": card.get("family"),
        "params": card.get("params", {}),
        "resampling": resampling_chosen(card),
        "classes": card.get("classes", []),
        "cv": {"f1_macro_mean": card.get("cv_f1_macro_mean"), "f1_macro_std": card.get("cv_f1_macro_std"),
               "folds": card.get("cv_folds"), "selected_by": card.get("selected_by")},
        "test": {name: test[name] for name in TEST_SCORES if name in test},
        "training_data_md5": card.get("training_data_md5"),
        "model_lock_md5": verified.lock_md5,
        "git_revision": verified.git_revision,
        "libraries": card.get("libraries", {}),
        "cleaning": verified.preprocess.model_dump(mode="json"),
    }


class Predictor:
    """Texts in, labels, confidences and class probabilities out."""

    def __init__(self, model, normalizer: TextNormalizer, classes: list[str], metadata: dict,
                 compiled: bool = True) -> None:
        self.model = model
        self.normalizer = normalizer
        self.classes = list(classes)
        self.metadata = metadata
        self.compiled = _checked_compiled_path(model, normalizer) if compiled else None

    @classmethod
    def load(cls, root: Path | str = ".") -> Predictor:
        """Verify ``models/final`` against ``dvc.lock`` (see artifacts.py), then load it."""
        import joblib

        root = Path(root)
        verified = verify_model(root)
        model = joblib.load(verified.model_file)
        preprocess = verified.preprocess
        normalizer = TextNormalizer(preprocess.cleaning, build_stopwords(preprocess.stopwords))
        return cls(model, normalizer, verified.card["classes"], model_metadata(verified, root))

    @property
    def version(self) -> str:
        return self.metadata.get("version", "unknown")

    def clean(self, texts: Sequence[str]) -> list[str]:
        return [self.normalizer(text) for text in texts]

    def predict(self, texts: Sequence[str]) -> Predictions:
        cleaned = self.clean(texts)
        if not cleaned:
            empty = np.zeros(0)
            return Predictions(self.classes, empty.astype(np.int64), empty,
                               np.zeros((0, len(self.classes))), empty.astype(np.int64))
        if self.compiled is not None:
            labels, raw = self.compiled.predict_with_proba(cleaned)
            label_index = np.asarray(labels, dtype=np.int64)
            probabilities = in_class_order(raw, list(self.compiled.classes_), self.classes)
        else:
            label_index, probabilities = _sklearn_predict(self.model, cleaned, self.classes)
        return Predictions(
            classes=self.classes,
            label_index=label_index,
            confidence=top_label_confidence(probabilities, label_index),
            probabilities=probabilities,
            cleaned_length=np.fromiter((len(text) for text in cleaned), dtype=np.int64, count=len(cleaned)),
        )


def _sklearn_predict(model, cleaned: list[str], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What the Pipeline's predict and predict_proba each do, with the features computed once
    (TF-IDF is most of the cost): the same steps on the same arrays, so the same bits."""
    features = model[:-1].transform(cleaned)
    classifier = model[-1]
    if hasattr(classifier, "predict_with_proba"):  # the ensemble: its members run once, not twice
        labels, raw = classifier.predict_with_proba(features)
        return (np.asarray(labels, dtype=np.int64),
                in_class_order(np.asarray(raw, dtype=float), list(classifier.classes_), classes))
    label_index = np.asarray(classifier.predict(features), dtype=np.int64)
    return label_index, predicted_probabilities(classifier, features, classes)


# Texts that exercise every branch the compiled path has (known and unknown words, emoji, a text
# that cleans to nothing): it must give scikit-learn's bits on them, or it is not used.
PROBE_TEXTS = ("@united thanks, the crew was great! :)", "lost my bag AGAIN... worst airline ever",
               "what time does boarding start?", "", "http://t.co/x 123", "zzqx unknownword",
               "not bad, not good either 😐", "delayed 3 hours!!! #fail")


def _checked_compiled_path(model, normalizer: TextNormalizer):
    from sentiment_pipeline.inference.compiled import compile_model

    compiled = compile_model(model)
    if compiled is None:
        return None
    cleaned = [normalizer(text) for text in PROBE_TEXTS]
    labels, raw = compiled.predict_with_proba(cleaned)
    expected_labels = np.asarray(model.predict(cleaned))
    expected_proba = np.asarray(model.predict_proba(cleaned))
    if not (np.array_equal(labels, expected_labels) and np.array_equal(raw, expected_proba)):
        log.warning("the compiled inference path differs from scikit-learn on the probe texts; "
                    "serving through scikit-learn")
        return None
    return compiled
