"""``sentiment-pipeline monitor``: a window of the prediction log against the training split.

Reference data: the training split the served model was fitted on (checked against the md5 in
its model card) for the class prior, text lengths and the text-drift classifier; the test
split, predicted by the same model, for the confidence distribution and the share of unknown
tokens, because on its own training text a model is more confident and knows every frequent
token, so in-sample numbers would flag drift on unchanged traffic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import MonitorConfig
from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.core.files import file_md5, read_csv, read_json
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.monitoring import drift, performance
from sentiment_pipeline.predlog.prediction_log import feedback, predictions

log = logging.getLogger(__name__)

STATUS_OK, STATUS_DRIFT, STATUS_INSUFFICIENT = "ok", "drift", "insufficient_data"


# ------------------------------------------------------------------ reference
@dataclass
class Reference:
    """What the model saw in training, and how it behaves on held-out data like it."""

    classes: list[str]
    prior: np.ndarray                # training label shares, in ``classes`` order
    train_cleaned: list[str]         # cleaned training texts (the domain classifier's side A)
    train_lengths: np.ndarray        # their lengths in characters
    test_confidence: np.ndarray      # the model's confidence on the test split
    model_prior: np.ndarray          # its mean probabilities there: the class balance the
                                     # probabilities are calibrated to (uniform-ish for a
                                     # class-weighted model, the training prior for the SVM's)
    test_oov_share: float | None     # unknown-token share of the test split (None: hashed features)
    test_accuracy: float             # what evaluate measured
    test_estimated_accuracy: float   # the label-free estimate on the test split: the drop is
                                     # measured from it, so the estimator's own bias cancels
    vocabulary: frozenset[str] | None = field(repr=False)  # the word vectorizer's unigrams
    tokenize: Callable[[str], list[str]] = field(repr=False)  # and its tokenizer


def word_vectorizer(model):
    """The word-level vectorizer inside the served model (alone or in a FeatureUnion): a
    TfidfVectorizer, or the HashingVectorizer of ``featurize.vectorizer: hashing``."""
    from sentiment_pipeline.pipeline.features import vectorizer_parts

    tfidf = model.named_steps["tfidf"] if hasattr(model, "named_steps") else model[0]
    return next(p for p in vectorizer_parts(tfidf) if getattr(p, "analyzer", None) == "word")


def tokenizer_and_vocabulary(model) -> tuple:
    """The word tokenizer and the unigrams the model knows (None for hashed features: every
    token has a column, so out-of-vocabulary shares are not measured)."""
    vectorizer = word_vectorizer(model)
    tokenize = vectorizer.build_tokenizer()
    if not hasattr(vectorizer, "vocabulary_"):
        return tokenize, None
    unigrams = frozenset(term for term in vectorizer.vocabulary_ if " " not in term)
    return tokenize, unigrams


def load_reference(root: Path, predictor: Predictor) -> Reference:
    root = Path(root)
    train_file, test_file = root / paths.TRAIN_FILE, root / paths.TEST_FILE
    for file in (train_file, test_file):
        if not file.is_file():
            raise DataError(f"{os.path.relpath(file, root)}: not found; the monitor compares production "
                            "with the training split: run 'dvc repro' (or 'dvc pull')")
    expected_md5 = predictor.metadata.get("training_data_md5")
    if expected_md5 and file_md5(train_file) != expected_md5:
        raise DataError(f"{os.path.relpath(train_file, root)}: md5 {file_md5(train_file)} is not the "
                        f"training data of the served model ({expected_md5}); run 'dvc checkout' or 'dvc repro'")
    train, test = read_csv(train_file), read_csv(test_file)
    classes = predictor.classes
    labels = train["label"].astype(str)
    prior = np.array([(labels == c).sum() for c in classes], dtype=float)
    prior /= prior.sum()
    test_predictions = predictor.predict(test["raw"].astype(str).tolist())
    tokenize, vocabulary = tokenizer_and_vocabulary(predictor.model)
    test_metrics = root / paths.TEST_METRICS
    accuracy = (read_json(test_metrics)["accuracy"] if test_metrics.is_file()
                else float(np.mean(np.array(test_predictions.labels) == test["label"].astype(str).to_numpy())))
    cleaned = train["text"].fillna("").astype(str).tolist()
    model_prior = np.maximum(test_predictions.probabilities.mean(axis=0), 1e-6)
    adapted, _ = performance.adapt_to_window_prior(test_predictions.probabilities, model_prior)
    return Reference(classes=classes, prior=prior, train_cleaned=cleaned,
                     train_lengths=np.array([len(t) for t in cleaned], dtype=float),
                     test_confidence=test_predictions.confidence,
                     model_prior=model_prior,
                     test_estimated_accuracy=performance.estimate(adapted, test_predictions.label_index)["accuracy"],
                     test_oov_share=None if vocabulary is None else drift.out_of_vocabulary_share(
                         test["text"].fillna("").astype(str), tokenize, vocabulary),
                     test_accuracy=float(accuracy), vocabulary=vocabulary, tokenize=tokenize)


# ------------------------------------------------------------------ the window
@dataclass(frozen=True)
class WindowSpec:
    last: int | None = None          # the newest N rows ...
    since: datetime | None = None    # ... or a time range (UTC)
    until: datetime | None = None
    model_version: str | None = None  # only this model's predictions


def read_window(engine: Engine, spec: WindowSpec) -> pd.DataFrame:
    """Predictions of the window, newest last, with the newest feedback label (or None)."""
    latest_feedback = (select(feedback.c.prediction_id, func.max(feedback.c.id).label("fid"))
                       .group_by(feedback.c.prediction_id).subquery())
    labels = select(feedback.c.prediction_id, feedback.c.label).join(
        latest_feedback, latest_feedback.c.fid == feedback.c.id).subquery()
    query = (select(predictions.c.id, predictions.c.created_at, predictions.c.prediction_id,
                    predictions.c.text, predictions.c.cleaned_length, predictions.c.label,
                    predictions.c.confidence, predictions.c.probabilities, predictions.c.model_version,
                    labels.c.label.label("feedback_label"))
             .outerjoin(labels, labels.c.prediction_id == predictions.c.prediction_id))
    if spec.model_version:
        query = query.where(predictions.c.model_version == spec.model_version)
    if spec.since:
        query = query.where(predictions.c.created_at >= spec.since)
    if spec.until:
        query = query.where(predictions.c.created_at < spec.until)
    query = query.order_by(predictions.c.id.desc())
    if spec.last:
        query = query.limit(spec.last)
    with engine.connect() as connection:
        frame = pd.DataFrame(connection.execute(query).mappings().all(),
                             columns=["id", "created_at", "prediction_id", "text", "cleaned_length", "label",
                                      "confidence", "probabilities", "model_version", "feedback_label"])
    return frame.iloc[::-1].reset_index(drop=True)


# ------------------------------------------------------------------ checks
CONFIDENCE_EDGES = [i / 10 for i in range(11)]
LENGTH_EDGES = [0, 1, 20, 40, 60, 80, 100, 120, 140, 200, 400]  # the last bin holds longer texts


def _shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges, dtype=float))
    total = counts.sum()
    return (counts / total).round(6).tolist() if total else [0.0] * len(counts)


def _check(name: str, value: float | None, threshold: float, *, higher_is_worse: bool = True,
           detail: str = "", unavailable: str | None = None) -> dict:
    if value is None or unavailable:
        return {"name": name, "value": None, "threshold": threshold, "drift": False, "applicable": False,
                "detail": unavailable or detail}
    beyond = value > threshold if higher_is_worse else value < threshold
    return {"name": name, "value": float(value), "threshold": threshold, "drift": bool(beyond),
            "applicable": True, "detail": detail}


def _probability_matrix(window: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return np.array([[float(p.get(c, 0.0)) for c in classes] for p in window["probabilities"]]).reshape(
        len(window), len(classes))


def evaluate_window(window: pd.DataFrame, reference: Reference, predictor: Predictor,
                    config: MonitorConfig) -> dict:
    """Every statistic and check of the window (the content of monitor.json but the header)."""
    classes = reference.classes
    index = {c: i for i, c in enumerate(classes)}
    known = window["label"].isin(index)
    if not known.all():
        log.warning("%d row(s) carry labels the served model does not have; left out", int((~known).sum()))
        window = window[known]
    n = len(window)
    result: dict = {"rows": n, "classes": classes}
    if n < config.min_rows:
        result.update(status=STATUS_INSUFFICIENT, checks=[],
                      message=f"{n} prediction(s) in the window, fewer than monitor.min_rows={config.min_rows}")
        return result
    predicted = window["label"].map(index).to_numpy(dtype=np.int64)
    probabilities = _probability_matrix(window, classes)
    confidence = window["confidence"].to_numpy(dtype=float)
    texts_logged = window["text"].notna().all()
    no_text = None if texts_logged else "texts not in the log (serve.log_text: false)"

    cleaned = predictor.clean(window["text"].astype(str).tolist()) if texts_logged else []
    lengths = window["cleaned_length"].to_numpy(dtype=float)
    length = drift.distribution_drift(reference.train_lengths, lengths)
    empty_share = float(np.mean(lengths == 0))
    oov = (drift.out_of_vocabulary_share(cleaned, reference.tokenize, reference.vocabulary)
           if texts_logged and reference.vocabulary is not None else None)
    # sorted: the log's row order depends on request timing; the seeded sample must not
    separated = (drift.domain_classifier(reference.train_cleaned, sorted(cleaned), config.seed,
                                         config.domain_classifier_rows, top_ngrams=config.top_ngrams,
                                         examples=config.example_texts) if texts_logged else None)
    auc = None if separated is None else separated["auc"]
    mix = drift.class_mix_drift(predicted, reference.prior)
    conf = drift.distribution_drift(reference.test_confidence, confidence)
    adapted, window_prior = performance.adapt_to_window_prior(probabilities, reference.model_prior)
    estimated = {**performance.estimate(adapted, predicted), "method": "CBPE on prior-adapted probabilities",
                 "estimated_class_shares": window_prior.tolist(),
                 "unadapted": performance.estimate(probabilities, predicted)}
    labelled = window["feedback_label"].isin(index)
    live = performance.realized(window.loc[labelled, "feedback_label"].map(index).to_numpy(dtype=np.int64),
                                predicted[labelled.to_numpy()], len(classes))

    result["histograms"] = {
        "confidence": {"edges": CONFIDENCE_EDGES,
                       "window": _shares(confidence, CONFIDENCE_EDGES),
                       "reference": _shares(reference.test_confidence, CONFIDENCE_EDGES)},
        "text_length": {"edges": LENGTH_EDGES,
                        "window": _shares(np.minimum(lengths, LENGTH_EDGES[-1]), LENGTH_EDGES),
                        "reference": _shares(np.minimum(reference.train_lengths, LENGTH_EDGES[-1]), LENGTH_EDGES)},
    }
    result["input"] = {"text_length": length, "empty_share": empty_share,
                       "oov_share": oov, "reference_oov_share": reference.test_oov_share,
                       "domain_classifier_auc": auc}
    # what the text-drift classifier found (None: no texts logged, or too few to fit it)
    result["text_drift"] = separated
    result["output"] = {"class_mix": mix, "confidence": conf}
    result["performance"] = {"reference_accuracy": reference.test_accuracy,
                             "reference_estimated_accuracy": reference.test_estimated_accuracy,
                             "estimated": estimated,
                             "live": live}
    enough_labels = live["rows"] >= config.min_feedback_rows
    result["checks"] = [
        _check("text_length_ks", length["ks"], config.max_text_length_ks,
               detail="KS statistic of cleaned text lengths vs the training split"),
        _check("empty_share", empty_share, config.max_empty_share, detail="texts that clean to nothing"),
        # oov is measured only with a vocabulary, and then test_oov_share is too (see load_reference)
        _check("oov_share_increase", None if oov is None else oov - cast(float, reference.test_oov_share),
               config.max_oov_share_increase,
               unavailable=no_text or ("hashed features have no vocabulary" if reference.vocabulary is None else None),
               detail="unknown-token share over the test split's"),
        _check("domain_classifier_auc", auc, config.max_domain_auc, unavailable=no_text,
               detail="ROC-AUC telling production text from training text (0.5: indistinguishable)"),
        _check("class_mix_psi", mix["psi"], config.max_class_psi,
               detail="PSI of the predicted class mix vs the training prior"),
        _check("confidence_ks", conf["ks"], config.max_confidence_ks,
               detail="KS statistic of confidences vs the test split's"),
        _check("estimated_accuracy_drop", reference.test_estimated_accuracy - estimated["accuracy"],
               config.max_estimated_accuracy_drop,
               detail="label-free accuracy estimate (CBPE, prior-adapted) on the test split minus on the window"),
        _check("live_accuracy_drop", reference.test_accuracy - live["accuracy"] if enough_labels else None,
               config.max_live_accuracy_drop,
               unavailable=None if enough_labels else
               f"{live['rows']} labelled prediction(s), fewer than monitor.min_feedback_rows={config.min_feedback_rows}",
               detail="test accuracy minus accuracy on feedback labels"),
    ]
    drifted = [c["name"] for c in result["checks"] if c["drift"]]
    result["status"] = STATUS_DRIFT if drifted else STATUS_OK
    result["message"] = (f"beyond thresholds: {', '.join(drifted)}" if drifted
                         else "every check within its threshold")
    return result


def monitor(engine: Engine, predictor: Predictor, reference: Reference, config: MonitorConfig,
            spec: WindowSpec) -> dict:
    window = read_window(engine, spec)
    result = evaluate_window(window, reference, predictor, config)
    times = window["created_at"]
    header = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "model_version": predictor.version, "model_family": predictor.metadata.get("family"),
              "window": {"last": spec.last, "since": spec.since.isoformat() if spec.since else None,
                         "until": spec.until.isoformat() if spec.until else None,
                         "first": _iso(times.min()) if len(times) else None,
                         "newest": _iso(times.max()) if len(times) else None},
              # the webhook URL is left out: it is often a secret, and monitor.json is an artifact
              "thresholds": config.model_dump(mode="json", exclude={"webhook_url"})}
    return {**header, **result}


def _iso(value) -> str:
    stamp = pd.Timestamp(value)  # SQLite hands back the UTC time without its zone
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()


def exit_code(result: dict) -> int:
    """0: ok (or too little data to judge), 1: a check beyond its threshold."""
    return 1 if result.get("status") == STATUS_DRIFT else 0


def write_outputs(result: dict, output_dir: Path) -> tuple[Path, Path]:
    """monitor.json and report.html, each written atomically; a directory that cannot be
    written is one line naming it."""
    from sentiment_pipeline.core.files import atomic_path, write_json
    from sentiment_pipeline.monitoring.html import render_report

    json_file, html_file = output_dir / "monitor.json", output_dir / "report.html"
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"{output_dir}: is a file; expected a directory for monitor.json and report.html "
                        "(--output-dir / monitor.output_dir)")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json(result, json_file)
        with atomic_path(html_file) as temporary:
            temporary.write_text(render_report(result), encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{output_dir}: cannot write monitor.json and report.html there: "
                        f"{exc.strerror or exc} (--output-dir / monitor.output_dir)") from None
    return json_file, html_file


def run(project: Path, config: MonitorConfig, database_url: str, spec: WindowSpec,
        output_dir: Path | None = None, history_url: str | None = None) -> tuple[dict, Path, Path]:
    """Load the served model and its reference, read the window, judge it, write the outputs,
    and store the run in the log at ``history_url`` (None: not stored)."""
    from sqlalchemy.exc import SQLAlchemyError

    from sentiment_pipeline.predlog.access import open_reader, read_failure

    project = Path(project)
    predictor = Predictor.load(project)
    reference = load_reference(project, predictor)
    engine = open_reader(database_url, project)  # SQLite read-only: never creates nor writes a file
    try:
        spec = WindowSpec(last=spec.last if (spec.last or spec.since or spec.until) else config.window_rows,
                          since=spec.since, until=spec.until, model_version=spec.model_version or predictor.version)
        try:
            result = monitor(engine, predictor, reference, config, spec)
        except SQLAlchemyError as exc:  # the server went away, or the file changed under us
            raise read_failure(database_url, exc) from None
    finally:
        engine.dispose()
    target = output_dir or (project / config.output_dir)
    json_file, html_file = write_outputs(result, Path(target))
    if history_url:
        from sentiment_pipeline.monitoring import history

        run_id = history.store(history_url, project, result)
        log.debug("stored as monitor run %d", run_id)
    return result, json_file, html_file
