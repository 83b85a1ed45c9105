"""Retraining on feedback, end to end (docs/data.md#several-sources): serve the pipeline's model,
predict, send feedback, `export-feedback`, `dvc exp run` with the original data and the feedback
as two sources, then `dvc metrics diff`. Runs on a copy of the session's pipeline repository."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import httpx
import pandas as pd
import pytest

from sentiment_pipeline.core.files import read_csv

from .pipeline_repo import Repo
from .test_monitoring_e2e import airline_tweets, bearer
from .test_serving_api import free_port, wait_ready

pytestmark = pytest.mark.e2e

FLIP = {"negative": "positive", "neutral": "negative", "positive": "neutral"}
SOURCES = ("download.sources=[{name:feedback,source:file,path:data/external/feedback.csv},"
           "{name:original}]")


@pytest.fixture(scope="module")
def retrained(served_project, tmp_path_factory):
    from sentiment_pipeline.serving.auth import create_key

    root = tmp_path_factory.mktemp("retrain") / "project"
    shutil.copytree(served_project, root, symlinks=True, ignore=shutil.ignore_patterns("logs"))
    repo = Repo(root)
    assert "up to date" in repo.dvc("status")
    repo.git("add", "-A")  # the session's run, committed: what `dvc metrics diff` compares with
    repo.git("commit", "-qm", "first run")
    before_test = read_csv(root / "data/processed/test.csv")

    # Feedback: 40 unseen tweets with their corpus labels, and 6 texts of the test split with
    # another label (which precedence must let win, in the test split).
    unseen = airline_tweets(40)
    relabelled = before_test.head(6).assign(label=lambda f: f["label"].map(FLIP))[["raw", "label"]]
    wanted = pd.concat([unseen, relabelled.rename(columns={"raw": "text"})], ignore_index=True)

    store = root.parent / "api_keys.json"
    key = create_key(store, "labeller", ["predict", "feedback"], rate_limit_per_second=1e4, rate_limit_burst=10**4)[1]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(root),
                               "--port", str(port), "--host", "127.0.0.1"], cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "SENTIMENT_LOG_LEVEL": "warning", "SENTIMENT_SERVE_KEYS_FILE": str(store)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        with httpx.Client(base_url=url, timeout=30, headers=bearer(key)) as http:
            answer = http.post("/v1/predict", json={"texts": wanted["text"].tolist()})
            answer.raise_for_status()
            for prediction, label in zip(answer.json()["predictions"], wanted["label"], strict=True):
                http.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"],
                                                "label": label}).raise_for_status()
    finally:
        server.send_signal(signal.SIGTERM)  # a graceful stop writes every logged row
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    repo.run(sys.executable, "-m", "sentiment_pipeline", "export-feedback")
    repo.git("add", "data/external/feedback.csv")  # staged, as docs/data.md's recipe does
    assert "download" in json.loads(repo.dvc("status", "--json"))  # data/external is its dep
    repo.dvc("exp", "run", "--set-param", SOURCES)  # feedback first: no download.precedence needed
    return repo, wanted, before_test


def test_the_exported_feedback_is_what_was_labelled(retrained):
    repo, wanted, _ = retrained
    exported = read_csv(repo.root / "data/external/feedback.csv")
    assert sorted(zip(exported["text"], exported["label"], strict=True)) == \
        sorted(zip(wanted["text"], wanted["label"], strict=True))


def test_the_experiment_reports_the_feedback_source_and_the_metrics_diff_shows_the_change(retrained):
    repo, wanted, _ = retrained
    assert "up to date" in repo.dvc("status")
    data = json.loads((repo.root / "metrics/data.json").read_text())
    feedback, original = data["sources"]["feedback"], data["sources"]["original"]
    assert feedback["precedence"] == 1 and original["precedence"] == 2
    assert feedback["rows_in"] == len(wanted) and feedback["rows_out"] == len(wanted)
    assert feedback["train_rows"] + feedback["test_rows"] == len(wanted) and feedback["train_rows"] > 0
    # the six relabelled test texts, and any unseen tweet that cleans to a fixture tweet's text
    # under another label (one does: 7)
    assert data["label_conflicts_resolved_by_precedence"] >= 6
    raw = read_csv(repo.root / "data/raw/reviews.csv")
    assert list(raw.columns) == ["text", "label", "source"] and raw["source"].iloc[0] == "feedback"

    diff = json.loads(repo.dvc("metrics", "diff", "--json"))
    rows = diff["metrics/data.json"]["rows_in"]
    assert rows["new"] - rows["old"] == len(wanted)
    assert diff["metrics/download.json"]["rows_out"]["diff"] == len(wanted)
    assert "metrics/test.json" in diff  # the model was retrained and evaluated again


def test_rows_of_the_original_test_split_stayed_in_test(retrained):
    repo, wanted, before = retrained
    after_test = read_csv(repo.root / "data/processed/test.csv")
    after_train = read_csv(repo.root / "data/processed/train.csv")
    assert set(before["raw"]) <= set(after_test["raw"])
    assert not set(before["raw"]) & set(after_train["raw"])
    # the relabelled ones carry feedback's label, from the feedback source
    relabelled = after_test.set_index("raw").loc[wanted["text"].tail(6)]
    assert relabelled["label"].tolist() == wanted["label"].tail(6).tolist()
    assert set(relabelled["source"]) == {"feedback"}
