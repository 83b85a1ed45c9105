import json

import numpy as np
import pytest

from sentiment_pipeline.core.errors import DataError
from sentiment_pipeline.pipeline.evaluate import log_with_dvclive, score_predictions
from sentiment_pipeline.pipeline.select import choose_family, model_card


def summary(family, mean, std=0.01):
    return {"family": family, "cv_f1_macro_mean": mean, "cv_f1_macro_std": std, "cv_folds": 5,
            "best_params": {"x": 1}, "n_candidates": 1}


def test_choose_family_by_mean_cv_score_ties_to_the_first():
    summaries = [summary("logreg", 0.70), summary("naive_bayes", 0.72), summary("xgboost", 0.72)]
    assert choose_family(summaries)["family"] == "naive_bayes"
    with pytest.raises(DataError):
        choose_family([])


def test_model_card_records_provenance():
    summaries = [summary("logreg", 0.70), summary("naive_bayes", 0.72)]
    card = model_card(summaries[1], summaries, ["neg", "pos"], "abc123", n_features=10)
    assert card["family"] == "naive_bayes" and card["training_data_md5"] == "abc123"
    assert set(card["candidates"]) == {"logreg", "naive_bayes"}
    assert {"scikit-learn", "imbalanced-learn", "xgboost", "python"} <= set(card["libraries"])


def test_score_predictions_against_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    metrics = score_predictions(y_true, y_pred, ["neg", "neu", "pos"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["neg"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3),
                                           "f1": pytest.approx(2 / 3), "support": 3}
    assert metrics["per_class"]["pos"]["f1"] == 0.0
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_dvclive_output_lands_in_our_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    y_true, y_pred = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    metrics = score_predictions(y_true, y_pred, ["neg", "pos"])
    log_with_dvclive(metrics, y_true, y_pred, ["neg", "pos"], tmp_path / "metrics/test.json",
                     tmp_path / "plots/confusion_matrix.json")
    logged = json.loads((tmp_path / "metrics/test.json").read_text())
    assert logged["accuracy"] == 0.75 and logged["per_class"]["pos"]["recall"] == 0.5
    matrix = json.loads((tmp_path / "plots/confusion_matrix.json").read_text())
    pairs = [(row["actual"], row["predicted"]) for row in matrix]
    assert pairs == [("neg", "neg"), ("pos", "pos"), ("pos", "neg"), ("neg", "neg")]
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sorted(p.name for p in leftovers) == ["confusion_matrix.json", "test.json"]


def test_cv_comparison_has_one_row_per_family_best_first():
    from sentiment_pipeline.pipeline.select import cv_comparison_rows

    rows = cv_comparison_rows([summary("logreg", 0.70), summary("linear_svm", 0.75, std=0.02)])
    assert [row["family"] for row in rows] == ["linear_svm", "logreg"]
    assert rows[0] == {"family": "linear_svm", "cv_f1_macro_mean": 0.75, "cv_f1_macro_std": 0.02,
                       "n_candidates": 1}
