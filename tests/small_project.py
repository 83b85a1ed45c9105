"""A project directory the CLI can serve and predict with, without ``dvc repro``: the fast tier's
small in-process model (conftest's ``small_predictor``) written as ``models/final`` with a
``dvc.lock`` that records its hash, as the ``select`` stage would."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import yaml

from sentiment_pipeline.core.config import PreprocessConfig
from sentiment_pipeline.inference.artifacts import dvc_dir_md5


def write_project(root: Path, predictor) -> Path:
    final = root / "models" / "final"
    final.mkdir(parents=True)
    joblib.dump(predictor.model, final / "model.joblib", compress=0)
    card = {"family": predictor.metadata["family"], "params": predictor.metadata["params"],
            "classes": predictor.classes, "training_data_md5": None}
    (final / "model_card.json").write_text(json.dumps(card))
    # the small model cleans with the defaults and no stopwords (see conftest.small_predictor)
    preprocess = PreprocessConfig.model_validate({"stopwords": {"enabled": False}}).model_dump(mode="json")
    lock = {"schema": "2.0", "stages": {
        "preprocess": {"params": {"params.yaml": {"preprocess": preprocess}}},
        "select": {"outs": [{"path": "models/final", "hash": "md5", "md5": dvc_dir_md5(final)}]}}}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    return root


def write_splits(root: Path, predictor, sample) -> Path:
    """``data/processed/{train,test}.csv`` (raw, text, label) from a frame of (text, label): what
    ``monitor`` compares the log with."""
    processed = root / "data" / "processed"
    processed.mkdir(parents=True)
    frame = sample.rename(columns={"text": "raw"})[["raw", "label"]].copy()
    frame["text"] = predictor.clean(frame["raw"].tolist())
    half = len(frame) // 2
    frame.iloc[:half].to_csv(processed / "train.csv", index=False)
    frame.iloc[half:].to_csv(processed / "test.csv", index=False)
    return root
