"""Lexicon baselines (VADER, TextBlob): label mapping, scores, inapplicable label sets, stage."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sentiment_pipeline.core.config import BaselinesConfig
from sentiment_pipeline.core.files import write_csv
from sentiment_pipeline.pipeline import baselines
from sentiment_pipeline.pipeline.baselines import (
    baseline_rules,
    labels_from_scores,
    lexicon_label_set,
    score_baselines,
    textblob_scores,
    vader_scores,
)
from sentiment_pipeline.review.report import ReportInputs, Snapshot, render

THREE = ["negative", "neutral", "positive"]
TWO = ["negative", "positive"]

# Unambiguous texts: both lexicons get them right, so the expected scores are exact.
OBVIOUS = pd.DataFrame({
    "raw": ["I love this airline, the crew was great!", "Terrible, awful, horrible service.",
            "The flight leaves from gate 12.", "Wonderful trip, thank you so much!",
            "Worst delay ever, I hate this.", "My seat is 14C."],
    "label": ["positive", "negative", "neutral", "positive", "negative", "neutral"],
})


def test_three_class_mapping_uses_a_neutral_band():
    scores = np.array([0.05, 0.049, -0.049, -0.05, 0.0, 0.9])
    assert labels_from_scores(scores, 0.05, THREE).tolist() == \
        ["positive", "neutral", "neutral", "negative", "neutral", "positive"]


def test_a_zero_threshold_leaves_only_an_exact_zero_neutral():
    scores = np.array([0.01, 0.0, -0.01])
    assert labels_from_scores(scores, 0.0, THREE).tolist() == ["positive", "neutral", "negative"]


def test_two_classes_map_by_sign_and_zero_is_negative():
    scores = np.array([0.3, 0.01, 0.0, -0.01])
    # the threshold is irrelevant without a neutral class
    assert labels_from_scores(scores, 0.05, TWO).tolist() == \
        ["positive", "positive", "negative", "negative"]


@pytest.mark.parametrize("labels, expected", [
    (["positive", "negative", "neutral", "negative"], THREE),
    (["positive", "negative"], TWO),
    (["neg", "pos"], None),
    (["1", "2", "3", "4", "5"], None),
    (["negative", "neutral"], None),  # a lexicon would predict 'positive', which is no label here
])
def test_lexicons_apply_to_sentiment_label_sets_only(labels, expected):
    assert lexicon_label_set(labels) == expected


def test_lexicon_scores_are_polarities():
    vader = vader_scores(OBVIOUS["raw"])
    blob = textblob_scores(OBVIOUS["raw"])
    for scores in (vader, blob):
        assert scores.shape == (6,) and np.all(np.abs(scores) <= 1.0)
        assert scores[0] > 0 and scores[1] < 0 and scores[2] == 0
    # VADER reads emphasis that cleaning removes: capitals and exclamation marks
    assert vader_scores(["GREAT!!!"])[0] > vader_scores(["great"])[0]


def test_baselines_score_like_the_model_on_obvious_texts():
    results = score_baselines(OBVIOUS, BaselinesConfig())
    assert set(results) == {"vader", "textblob"}
    for scores in results.values():
        assert set(scores) == {"accuracy", "f1_macro", "f1_weighted", "per_class"}
        assert scores["accuracy"] == 1.0 and scores["f1_macro"] == 1.0
        assert list(scores["per_class"]) == THREE
        assert scores["per_class"]["neutral"]["support"] == 2


def test_binary_labels_give_two_class_scores():
    binary = OBVIOUS[OBVIOUS["label"] != "neutral"]
    results = score_baselines(binary, BaselinesConfig())
    assert list(results["vader"]["per_class"]) == TWO
    assert results["vader"]["accuracy"] == 1.0


def test_baselines_read_the_original_text(monkeypatch):
    seen = []
    monkeypatch.setitem(baselines.SCORERS, "vader",
                        ("compound", lambda texts: seen.extend(texts) or np.zeros(len(texts))))
    frame = OBVIOUS.assign(text=OBVIOUS["raw"].str.lower())
    score_baselines(frame, BaselinesConfig())
    assert seen == OBVIOUS["raw"].tolist()


def test_labels_that_are_not_sentiments_give_a_not_applicable_entry():
    stars = OBVIOUS.assign(label=["5", "1", "3", "5", "1", "3"])
    results = score_baselines(stars, BaselinesConfig())
    assert set(results) == {"vader", "textblob"}
    assert results["vader"]["applicable"] is False
    assert "['1', '3', '5']" in results["vader"]["reason"]
    assert baseline_rules(BaselinesConfig(), stars["label"]) == {}


def test_rules_describe_the_thresholds():
    rules = baseline_rules(BaselinesConfig(vader_threshold=0.1), THREE)
    assert rules["vader"] == "compound >= 0.1 positive, <= -0.1 negative, neutral in between"
    assert "exactly 0 neutral" in rules["textblob"]
    assert "no neutral band" in baseline_rules(BaselinesConfig(), TWO)["vader"]


def test_report_shows_inapplicable_baselines_without_crashing():
    current = Snapshot(test={"f1_macro": 0.7, "accuracy": 0.8},
                       baselines={"vader": {"applicable": False, "reason": "labels are stars"},
                                  "textblob": {"accuracy": 0.5, "f1_macro": 0.4}})
    markdown = render(ReportInputs(base_rev="abc", base=Snapshot(), current=current)).markdown
    assert "| vader | — | — | not applicable: labels are stars |" in markdown
    assert "| textblob | 0.5000 | 0.4000 | +0.3000 |" in markdown


# ------------------------------------------------------------------ the stage, through the CLI
def run_stage(cwd):
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "baselines"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_baselines_stage_writes_metrics_baselines_json(tmp_path):
    (tmp_path / "params.yaml").write_text("baselines:\n  vader_threshold: 0.05\n")
    write_csv(OBVIOUS.assign(text=OBVIOUS["raw"].str.lower()), tmp_path / "data/processed/test.csv")
    result = run_stage(tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "metrics/baselines.json").read_text())
    assert written["vader"]["f1_macro"] == 1.0 and "textblob" in written
    first = (tmp_path / "metrics/baselines.json").read_bytes()
    assert run_stage(tmp_path).returncode == 0
    assert (tmp_path / "metrics/baselines.json").read_bytes() == first


def test_baselines_stage_names_a_missing_column(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    write_csv(OBVIOUS[["label"]], tmp_path / "data/processed/test.csv")
    result = run_stage(tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "data/processed/test.csv: missing column(s) ['raw']" in result.stderr
    assert not (tmp_path / "metrics/baselines.json").exists()


def test_a_bad_threshold_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("baselines:\n  vader_threshold: -0.1\n")
    result = run_stage(tmp_path)
    assert result.returncode == 1 and "baselines.vader_threshold" in result.stderr
