"""The served model: verified loading, one predictor equal to evaluate, batch prediction files."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from sentiment_pipeline.inference.artifacts import ModelIntegrityError, dvc_dir_md5, verify_model
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.pipeline.text import lexicon_token, vader_compound

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(served_project):
    return served_project


@pytest.fixture()
def copy(project, tmp_path):
    """Just what serving reads: dvc.lock, models/final, metrics/test.json."""
    for name in ("dvc.lock", "metrics/test.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(project / name, tmp_path / name)
    shutil.copytree(project / "models/final", tmp_path / "models/final")
    return tmp_path


def test_the_directory_hash_is_dvcs(project):
    lock = (project / "dvc.lock").read_text()
    assert dvc_dir_md5(project / "models/final") in lock


def test_predictions_on_the_raw_test_text_equal_evaluates(project):
    predictor = Predictor.load(project)
    test = pd.read_csv(project / "data/processed/test.csv", dtype=str, keep_default_na=False)
    predictions = predictor.predict(test["raw"].tolist())
    evaluated = json.loads((project / "plots/confusion_matrix.json").read_text())
    assert predictions.labels == [row["predicted"] for row in evaluated]
    assert predictor.clean(test["raw"].tolist()) == test["text"].tolist()
    rows = range(len(predictions))
    assert all(abs(predictions.probabilities[i].sum() - 1) < 1e-9 for i in rows)
    assert all(predictions.confidence[i] == predictions.probabilities[i, predictions.label_index[i]] for i in rows)


def test_metadata_travels_with_the_model(project):
    meta = Predictor.load(project).metadata
    card = json.loads((project / "models/final/model_card.json").read_text())
    assert meta["family"] == card["family"] and meta["classes"] == card["classes"]
    assert meta["model_lock_md5"] == dvc_dir_md5(project / "models/final")
    assert meta["version"] == meta["model_lock_md5"][:12]
    assert meta["training_data_md5"] == card["training_data_md5"]
    assert len(meta["git_revision"]) == 40
    assert set(meta["test"]) >= {"accuracy", "f1_macro"} and meta["cv"]["f1_macro_mean"] > 0


def test_a_tampered_model_is_refused_before_unpickling(copy):
    verify_model(copy)
    with open(copy / "models/final/model.joblib", "ab") as model:
        model.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=r"models/final: hash \w+\.dir does not match"):
        Predictor.load(copy)


def test_a_missing_model_or_lock_says_what_to_run(copy):
    (copy / "dvc.lock").rename(copy / "other.lock")
    with pytest.raises(ModelIntegrityError, match="dvc.lock: not found"):
        verify_model(copy)
    shutil.rmtree(copy / "models/final")
    with pytest.raises(ModelIntegrityError, match=r"models/final/model.joblib: not found; run 'dvc repro'"):
        verify_model(copy)


def test_cleaning_comes_from_the_lock_not_from_todays_params(copy):
    (copy / "params.yaml").write_text("preprocess:\n  cleaning:\n    lowercase: false\n")
    predictor = Predictor.load(copy)
    # lower-cased, with the lexicon token of the locked cleaning (VADER reads the capitals)
    locked = yaml.safe_load((copy / "dvc.lock").read_text())["stages"]["preprocess"]["params"]["params.yaml"]
    cleaning = locked["preprocess.cleaning"]  # dvc.yaml lists the section's keys one by one
    assert cleaning["lexicon"] == "vader"
    # VADER reads the text without the mention, as in training
    token = lexicon_token(vader_compound("Flight Delayed!!"), cleaning["lexicon_bins"])
    assert token != lexicon_token(vader_compound("@united Flight Delayed!!"), cleaning["lexicon_bins"])
    assert predictor.clean(["@united Flight Delayed!!"]) == [f"flight delayed _exclaim_ {token}"]


def run_predict(root, *args):
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "predict", *args,
                           "--project", str(root)], cwd=root, capture_output=True, text=True, timeout=120)


TEXTS = ["@united the flight was great, thanks!", "lost my bag AGAIN", "what time is boarding?",
         "worst airline ever", "ok"]


def test_predict_csv_to_gzipped_jsonl_in_chunks(copy):
    pd.DataFrame({"tweet_id": range(len(TEXTS)), "body": TEXTS}).to_csv(copy / "in.csv", index=False)
    result = run_predict(copy, "in.csv", "out.jsonl.gz", "--text-column", "body",
                         "--id-column", "tweet_id", "--chunk-rows", "2")
    assert result.returncode == 0, result.stderr
    with gzip.open(copy / "out.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    expected = Predictor.load(copy).predict(TEXTS)
    assert [r["tweet_id"] for r in rows] == [str(i) for i in range(len(TEXTS))]  # ids stay text
    assert [r["label"] for r in rows] == expected.labels
    # JSON Lines keep 10 decimals (pandas' double_precision): rounding both sides to 9 would
    # differ whenever the 10th digit sits on a rounding boundary
    assert [r["confidence"] for r in rows] == pytest.approx(expected.confidence.tolist(), abs=1e-10)
    assert set(rows[0]) == {"tweet_id", "label", "confidence", "p_negative", "p_neutral", "p_positive"}


@pytest.mark.parametrize("suffix", ["tsv", "parquet", "csv.gz"])
def test_predict_round_trips_every_format(copy, suffix):
    frame = pd.DataFrame({"text": TEXTS})
    source = copy / f"in.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(source)
    else:
        frame.to_csv(source, sep="\t" if suffix == "tsv" else ",", index=False)
    result = run_predict(copy, source.name, f"out.{suffix}")
    assert result.returncode == 0, result.stderr
    out = (pd.read_parquet(copy / "out.parquet") if suffix == "parquet"
           else pd.read_csv(copy / f"out.{suffix}", sep="\t" if suffix == "tsv" else ","))
    assert out["label"].tolist() == Predictor.load(copy).predict(TEXTS).labels


def test_bad_rows_fail_by_row_number_or_are_skipped(copy):
    lines = [json.dumps({"id": 1, "text": "great"}), json.dumps({"id": 2, "text": None}),
             json.dumps({"id": 3, "text": 42}), json.dumps({"id": 4, "text": "awful delay"})]
    (copy / "in.jsonl").write_text("\n".join(lines) + "\n")
    failed = run_predict(copy, "in.jsonl", "out.csv", "--id-column", "id")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "column 'text' is missing or not text in row(s) 2, 3" in failed.stderr
    assert not (copy / "out.csv").exists()
    skipped = run_predict(copy, "in.jsonl", "out.csv", "--id-column", "id", "--on-bad-row", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 2 row(s)" in skipped.stderr
    assert pd.read_csv(copy / "out.csv")["id"].tolist() == [1, 4]


def test_predict_names_a_missing_column_and_an_unknown_format(copy):
    pd.DataFrame({"body": TEXTS}).to_csv(copy / "in.csv", index=False)
    missing = run_predict(copy, "in.csv", "out.csv")
    assert missing.returncode == 1 and "no column(s) ['text']" in missing.stderr
    unknown = run_predict(copy, "in.csv", "out.xlsx", "--text-column", "body")
    assert unknown.returncode == 1 and "out.xlsx: cannot tell the format" in unknown.stderr
