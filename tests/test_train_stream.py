"""Streamed training (train.chunk_rows): the train stage reads X_train.npz in blocks and gives the
in-memory search's CV table, summary, out-of-fold probabilities and model bytes for the sgd
family; families that cannot learn block by block are named with how to drop them."""

from __future__ import annotations

import io
import shutil

import joblib
import numpy as np
import pytest
import yaml

from sentiment_pipeline.core.config import FeaturizeConfig, ResamplingConfig, TrainConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.pipeline.features import featurize
from sentiment_pipeline.pipeline.train import grid_search, train_families_streamed

TRAIN = TrainConfig(cv_folds=3, n_jobs=2)
GRID = {"clf__alpha": [1e-4, 1e-3], "clf__epochs": [3], "clf__block_rows": [25], "clf__calibration_share": [0.3]}


@pytest.fixture(scope="module")
def featurized(separable_texts):
    train = separable_texts.iloc[:90].sort_values("label", kind="stable")  # sorted by label, as the airline split
    return featurize(train, separable_texts.iloc[90:], FeaturizeConfig(min_df=1))


@pytest.fixture(scope="module")
def features(featurized):
    return featurized[1]


def _bytes(model) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("stripe_rows", [64, 7])
def test_the_streamed_search_is_the_in_memory_search(features, tmp_path, monkeypatch, stripe_rows):
    """64 (the default): 2 stripes of the 90 rows; 7: 13 stripes, so blocks gather many runs of
    rows from all over the file, and chunks of 20 rows cut through stripes."""
    from sentiment_pipeline.pipeline import incremental
    from sentiment_pipeline.pipeline.features import save_csr

    monkeypatch.setattr(incremental, "STRIPE_ROWS", stripe_rows)

    save_csr(tmp_path / "X_train.npz", features.X_train)
    strategies = ["class_weight", "none"]
    in_memory = grid_search("sgd", GRID, features.X_train, features.y_train, TRAIN, ResamplingConfig(), strategies)
    streamed = train_families_streamed({"sgd": (GRID, strategies)}, tmp_path / "X_train.npz", features.y_train,
                                       TRAIN.model_copy(update={"chunk_rows": 20}), ResamplingConfig())["sgd"]
    assert streamed.cv_table.equals(in_memory.cv_table) and len(streamed.cv_table) == 4
    assert streamed.summary == in_memory.summary
    assert streamed.best_params == in_memory.best_params
    assert np.array_equal(streamed.oof_proba, in_memory.oof_proba)
    assert _bytes(streamed.best_estimator) == _bytes(in_memory.best_estimator)
    assert set(streamed.timing) == set(in_memory.timing) and streamed.timing["fits"] == 4 * 3 + 1
    assert streamed.summary["cv_f1_macro_mean"] > 0.6


def test_the_stage_streams_with_chunk_rows_and_writes_the_same_files(features, tmp_path, monkeypatch):
    from sentiment_pipeline.core import paths
    from sentiment_pipeline.stages import train as stage

    monkeypatch.chdir(tmp_path)
    features.save(paths.FEATURES_DIR)
    grid = {"alpha": [1e-4], "epochs": [2], "block_rows": [30], "calibration_share": [0.3],
            "resampling": ["class_weight"]}
    params = {"train": {"cv_folds": 3, "n_jobs": 2, "families": {"sgd": grid}}}
    outputs = [paths.candidate_dir("sgd") / name for name in ("model.joblib", "cv_results.csv", "oof_proba.npy")]
    outputs.append(paths.cv_summary("sgd"))
    runs = []
    for chunk_rows in (None, 16):
        params["train"]["chunk_rows"] = chunk_rows
        paths.PARAMS.write_text(yaml.safe_dump(params))
        for directory in (paths.CANDIDATES_DIR, paths.CV_METRICS_DIR):  # each run writes its own files
            shutil.rmtree(directory, ignore_errors=True)
        stage.run()
        runs.append([path.read_bytes() for path in outputs])
    assert runs[0] == runs[1]


def test_families_that_cannot_stream_are_named_with_how_to_drop_them(features, tmp_path):
    grids = {"logreg": ({"clf__C": [1.0]}, None), "sgd": (GRID, None), "naive_bayes": ({"clf__alpha": [1.0]}, None)}
    with pytest.raises(ConfigError) as error:
        train_families_streamed(grids, tmp_path / "absent.npz", features.y_train,
                                TRAIN.model_copy(update={"chunk_rows": 20}), ResamplingConfig())
    message = str(error.value)
    assert "\n" not in message and "logreg, naive_bayes cannot learn from in blocks" in message
    assert "-S '~train.families.logreg' -S '~train.families.naive_bayes'" in message


def test_smote_from_the_featurize_default_is_refused_for_sgd(features):
    with pytest.raises(ConfigError, match=r"train.families.sgd.resampling: SMOTE"):
        grid_search("sgd", GRID, features.X_train, features.y_train, TRAIN, ResamplingConfig(strategy="smote"))


def test_a_streamed_run_of_sgd_alone_goes_through_select_without_an_ensemble(featurized, tmp_path, monkeypatch):
    """Only sgd can stream, and an ensemble needs two members: with train.ensemble.members []
    the ensemble stage builds none (saying so in its outputs) and select compares the trained
    families alone; the final model is sgd's, text in."""
    import joblib

    from sentiment_pipeline.core import paths
    from sentiment_pipeline.core.files import read_json
    from sentiment_pipeline.stages import ensemble, select
    from sentiment_pipeline.stages import train as stage

    vectorizer, features = featurized[:2]
    monkeypatch.chdir(tmp_path)
    features.save(paths.FEATURES_DIR)
    paths.TRAIN_FILE.parent.mkdir(parents=True)
    paths.TRAIN_FILE.write_text("text,label\n")
    paths.VECTORIZER_FILE.parent.mkdir(parents=True)
    joblib.dump(vectorizer, paths.VECTORIZER_FILE)
    grid = {"alpha": [1e-4], "epochs": [2], "block_rows": [30], "calibration_share": [0.3],
            "resampling": ["class_weight"]}
    params = {"train": {"cv_folds": 3, "n_jobs": 2, "chunk_rows": 16, "families": {"sgd": grid},
                        "ensemble": {"members": ["sgd", "logreg"]}}}
    paths.PARAMS.write_text(yaml.safe_dump(params))
    stage.run()
    with pytest.raises(ConfigError, match=r"names \['logreg'\].*or \[\] to build no ensemble"):
        ensemble.run()
    params["train"]["ensemble"]["members"] = []
    paths.PARAMS.write_text(yaml.safe_dump(params))
    ensemble.run()
    assert read_json(paths.cv_summary("ensemble")) == {"family": "ensemble", "skipped": ensemble.NO_ENSEMBLE}
    assert [p.name for p in paths.candidate_dir("ensemble").iterdir()] == ["skipped.json"]
    select.run()
    assert read_json(paths.SELECTION)["family"] == "sgd"
    assert [row["family"] for row in read_json(paths.CV_COMPARISON)] == ["sgd"]
    model = joblib.load(paths.FINAL_MODEL)
    assert model.predict_proba(["great flight thanks"]).shape == (1, 3)
    # the docs' tables and the pull-request report leave the skipped ensemble out, with or without
    # select's comparison to say which families ran
    import importlib.util
    from pathlib import Path

    from sentiment_pipeline.review.report import read_snapshot

    spec = importlib.util.spec_from_file_location("docs_tables", Path(__file__).parents[1] / "scripts/docs_tables.py")
    docs_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_tables)

    assert [r["family"] for r in docs_tables.cv_results(tmp_path)] == ["sgd"]
    paths.CV_COMPARISON.unlink()
    assert list(read_snapshot(tmp_path, None).cv) == ["sgd"]


def test_an_ensemble_of_one_member_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"train.ensemble.members lists one family \(sgd\).*or \[\] for none"):
        TrainConfig(ensemble={"members": ["sgd"]})
