"""Evaluation outputs on tiny fitted models: curves, calibration, error analysis, model card."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score
from sklearn.pipeline import Pipeline

from sentiment_pipeline.core.files import write_csv
from sentiment_pipeline.pipeline.evaluate import (
    EvaluationError,
    PlotFiles,
    calibration_bin_ids,
    class_file_stem,
    encode_labels,
    error_analysis,
    evaluate_model,
    evaluation_from_predictions,
    expected_calibration_error,
    log_with_dvclive,
    predicted_probabilities,
    top_label_calibration_inputs,
)
from sentiment_pipeline.review.model_card import render_model_card

from .conftest import PROJECT_ROOT

MULTICLASS = ["negative", "neutral", "positive"]
BINARY = ["negative", "positive"]


def fitted_case(airline_sample: pd.DataFrame, classes: list[str]):
    """A TF-IDF + logistic regression fitted on 2/3 of the fixture tweets of ``classes``; the
    rest is the test split. Real tweets, so the model is good but not perfect."""
    frame = airline_sample[airline_sample["label"].isin(classes)].reset_index(drop=True)
    frame = frame.assign(raw=frame["text"], text=frame["text"].str.lower())
    is_test = np.arange(len(frame)) % 3 == 0
    train, test = frame[~is_test], frame[is_test].reset_index(drop=True)
    model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(train["text"], encode_labels(train["label"], classes, "train.csv"))
    y_true = encode_labels(test["label"], classes, "test.csv")
    return model, test, y_true


@pytest.fixture(params=[MULTICLASS, BINARY], ids=["three_classes", "two_classes"])
def case(request, airline_sample):
    classes = request.param
    model, test, y_true = fitted_case(airline_sample, classes)
    evaluation = evaluate_model(model, test["text"], y_true, classes, calibration_bins=10)
    return classes, test, evaluation


def plot_files(root) -> PlotFiles:
    return PlotFiles(confusion_normalized=root / "plots/confusion_matrix_normalized.json",
                     roc_dir=root / "plots/roc", precision_recall_dir=root / "plots/precision_recall",
                     calibration=root / "plots/calibration.json")


def strict_json(path):
    def refuse(constant):
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture()
def logged(case, tmp_path):
    classes, test, evaluation = case
    log_with_dvclive(evaluation.metrics, evaluation.y_true, evaluation.y_pred, classes,
                     tmp_path / "metrics/test.json", tmp_path / "plots/confusion_matrix.json",
                     evaluation=evaluation, plots=plot_files(tmp_path), calibration_bins=10)
    return classes, evaluation, tmp_path


# ------------------------------------------------------------------ curves
def test_one_roc_curve_per_class_from_0_0_to_1_1_with_sklearns_auc(logged):
    classes, evaluation, root = logged
    files = sorted((root / "plots/roc").iterdir())
    # two classes give two curves: not the single column label_binarize would return
    assert [f.name for f in files] == [f"{name}.json" for name in classes]
    metrics = json.loads((root / "metrics/test.json").read_text())
    for i, name in enumerate(classes):
        points = strict_json(root / f"plots/roc/{name}.json")["roc"]
        fpr, tpr = np.array([p["fpr"] for p in points]), np.array([p["tpr"] for p in points])
        assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
        expected = roc_auc_score(evaluation.y_true == i, evaluation.proba[:, i])
        assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-4)  # points rounded
        assert metrics["per_class"][name]["roc_auc"] == pytest.approx(expected)
        assert 0.5 < expected < 1.0  # a real, imperfect model: the test is not vacuous
    if len(classes) > 2:
        macro = roc_auc_score(evaluation.y_true, evaluation.proba, multi_class="ovr", average="macro")
    else:
        macro = roc_auc_score(evaluation.y_true, evaluation.proba[:, 1])
    assert metrics["roc_auc_macro"] == pytest.approx(macro)


def test_one_precision_recall_curve_per_class_with_sklearns_average_precision(logged):
    classes, evaluation, root = logged
    assert sorted(f.name for f in (root / "plots/precision_recall").iterdir()) == \
        [f"{name}.json" for name in classes]
    metrics = json.loads((root / "metrics/test.json").read_text())
    for i, name in enumerate(classes):
        points = strict_json(root / f"plots/precision_recall/{name}.json")["precision_recall"]
        recall = [p["recall"] for p in points]
        assert recall[0] == 1.0 and all(0.0 <= p["precision"] <= 1.0 for p in points)
        expected = average_precision_score(evaluation.y_true == i, evaluation.proba[:, i])
        assert metrics["per_class"][name]["average_precision"] == pytest.approx(expected)


def test_normalized_confusion_matrix_has_the_counts_data_and_rows_sum_to_one(logged):
    classes, evaluation, root = logged
    counts = strict_json(root / "plots/confusion_matrix.json")
    normalized = strict_json(root / "plots/confusion_matrix_normalized.json")
    # Same actual/predicted pairs: dvc's confusion_normalized template divides by row totals.
    assert normalized == counts and len(counts) == len(evaluation.y_true)
    table = pd.crosstab(pd.Series([r["actual"] for r in normalized], name="actual"),
                        pd.Series([r["predicted"] for r in normalized], name="predicted"),
                        normalize="index")
    assert sorted(table.index) == classes
    assert np.allclose(table.sum(axis=1), 1.0)
    expected = confusion_matrix(evaluation.y_true, evaluation.y_pred, normalize="true")
    assert np.allclose(table.reindex(index=classes, columns=classes, fill_value=0.0), expected)


def test_dvc_yaml_declares_every_evaluation_plot_with_its_template():
    stage = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
    plots = {name: props for entry in stage["plots"] for name, props in entry.items()}
    normalized = plots["plots/confusion_matrix_normalized.json"]
    # the template normalises over the y field: y must be the actual class for row sums of 1
    assert normalized["template"] == "confusion_normalized"
    assert (normalized["x"], normalized["y"]) == ("predicted", "actual")
    assert plots["plots/roc"]["x"] == "fpr" and plots["plots/roc"]["y"] == "tpr"
    assert plots["plots/precision_recall"]["x"] == "recall"
    assert plots["plots/calibration.json"]["x"] == "prob_pred"
    assert all(props["cache"] is False for props in plots.values())
    assert "metrics/baselines.json" in stage["deps"]


def test_calibration_plot_matches_the_bins_of_the_ece(logged):
    classes, evaluation, root = logged
    points = strict_json(root / "plots/calibration.json")["calibration"]
    correct, confidence = top_label_calibration_inputs(evaluation.proba, evaluation.y_true)
    bins = calibration_bin_ids(confidence, 10)
    filled = sorted(set(bins))
    assert len(points) == len(filled)
    for point, b in zip(points, filled, strict=False):
        in_bin = bins == b
        # plot files hold 5 significant digits
        assert point["prob_pred"] == pytest.approx(confidence[in_bin].mean(), rel=1e-4)
        assert point["prob_true"] == pytest.approx(correct[in_bin].mean(), rel=1e-4)
    metrics = json.loads((root / "metrics/test.json").read_text())
    gaps = [abs(p["prob_true"] - p["prob_pred"]) * np.sum(bins == b) for p, b in zip(points, filled, strict=False)]
    assert metrics["ece"] == pytest.approx(sum(gaps) / len(bins), abs=1e-4)


def test_logging_leaves_nothing_but_our_files(logged):
    classes, _, root = logged
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(["metrics/test.json", "plots/confusion_matrix.json",
                            "plots/confusion_matrix_normalized.json", "plots/calibration.json",
                            *(f"plots/roc/{c}.json" for c in classes),
                            *(f"plots/precision_recall/{c}.json" for c in classes)])


def test_same_inputs_give_the_same_bytes(case, tmp_path):
    classes, test, evaluation = case
    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        log_with_dvclive(evaluation.metrics, evaluation.y_true, evaluation.y_pred, classes,
                         root / "metrics/test.json", root / "plots/confusion_matrix.json",
                         evaluation=evaluation, plots=plot_files(root))
        write_csv(error_analysis(test, evaluation, 5, 2, seed=7), root / "metrics/errors.csv")
        outputs.append({str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()})
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------ calibration
def test_ece_of_a_perfectly_calibrated_toy_case_is_zero():
    # 60% confident and right 6 times in 10; 90% confident and right 9 times in 10
    confidence = np.array([0.6] * 10 + [0.9] * 10)
    correct = np.array([1] * 6 + [0] * 4 + [1] * 9 + [0] * 1, dtype=bool)
    assert expected_calibration_error(correct, confidence, n_bins=10) == pytest.approx(0.0)


def test_ece_of_an_over_confident_model_is_its_confidence_gap():
    confidence = np.full(10, 0.99)
    correct = np.array([1, 0] * 5, dtype=bool)
    assert expected_calibration_error(correct, confidence, n_bins=10) == pytest.approx(0.49)
    # weighted by bin size: 10 rows with gap 0.49 and 30 perfectly calibrated rows
    confidence = np.concatenate([confidence, np.full(30, 0.5)])
    correct = np.concatenate([correct, np.array([1, 0] * 15, dtype=bool)])
    assert expected_calibration_error(correct, confidence, n_bins=10) == pytest.approx(0.49 / 4)


def test_ece_uses_the_same_edges_as_sklearns_calibration_curve():
    # 0.5 is an edge: sklearn puts it in the lower bin; so must we
    assert list(calibration_bin_ids(np.array([0.0, 0.5, 0.51, 1.0]), 2)) == [0, 0, 1, 1]


# ------------------------------------------------------------------ probabilities
class ReversedModel:
    """A model whose probability columns come in the reverse class order."""

    classes_ = np.array([2, 1, 0])

    def predict_proba(self, texts):
        return np.tile([0.7, 0.2, 0.1], (len(texts), 1))


def test_probability_columns_follow_the_model_card_classes():
    proba = predicted_probabilities(ReversedModel(), pd.Series(["a", "b"]), MULTICLASS)
    assert proba[0].tolist() == [0.1, 0.2, 0.7]


def test_a_model_with_other_classes_or_no_probabilities_is_refused():
    with pytest.raises(EvaluationError, match="model_card.json 'classes'"):
        predicted_probabilities(ReversedModel(), pd.Series(["a"]), BINARY)
    with pytest.raises(EvaluationError, match="no predict_proba"):
        predicted_probabilities(object(), pd.Series(["a"]), BINARY)


def test_a_test_label_the_model_never_saw_is_named():
    with pytest.raises(EvaluationError, match=r"test.csv: column 'label' holds \['mixed'\]"):
        encode_labels(pd.Series(["negative", "mixed"]), BINARY, "test.csv")


def test_class_names_become_safe_file_names():
    assert class_file_stem("very negative/angry") == "very_negative_angry"
    assert class_file_stem("positive") == "positive"


# ------------------------------------------------------------------ error analysis
def toy_evaluation():
    classes = MULTICLASS
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 2, 1, 0, 0, 2, 2, 0])
    confidence = np.array([0.9, 0.8, 0.95, 0.6, 0.7, 0.85, 0.85, 0.9, 0.5, 0.4])
    proba = np.full((10, 3), 0.0)
    for row, (pred, conf) in enumerate(zip(y_pred, confidence, strict=False)):
        proba[row] = (1 - conf) / 2
        proba[row, pred] = conf
    test = pd.DataFrame({"text": [f"clean {i}" for i in range(10)],
                         "raw": [f"Raw #{i}!" for i in range(10)],
                         "label": [classes[i] for i in y_true]})
    return test, evaluation_from_predictions(y_true, y_pred, proba, classes, calibration_bins=10)


def test_error_file_lists_the_most_confident_mistakes_first():
    test, evaluation = toy_evaluation()
    errors = error_analysis(test, evaluation, most_confident=3, per_cell=0, seed=0)
    assert errors["section"].unique().tolist() == ["most_confident_error"]
    # rows 3, 6, 7 wrong at 0.95, 0.85, 0.85 (a tie: the earlier row first)
    assert errors["data_row"].tolist() == [3, 6, 7]
    assert errors["p_predicted"].tolist() == [0.95, 0.85, 0.85]
    assert (errors["actual"] != errors["predicted"]).all()
    first = errors.iloc[0]
    assert (first["actual"], first["predicted"], first["raw"], first["text"]) == \
        ("negative", "neutral", "Raw #2!", "clean 2")
    assert first["p_actual"] == pytest.approx(0.025)


def test_error_file_samples_every_confusion_cell_with_a_seed():
    test, evaluation = toy_evaluation()
    errors = error_analysis(test, evaluation, most_confident=0, per_cell=1, seed=3)
    cells = list(zip(errors["actual"], errors["predicted"], strict=False))
    # one row from each non-empty cell, in class order
    assert cells == [("negative", "negative"), ("negative", "neutral"), ("negative", "positive"),
                     ("neutral", "negative"), ("neutral", "neutral"),
                     ("positive", "negative"), ("positive", "positive")]
    again = error_analysis(test, evaluation, most_confident=0, per_cell=1, seed=3)
    pd.testing.assert_frame_equal(errors, again)
    everything = error_analysis(test, evaluation, most_confident=0, per_cell=5, seed=3)
    assert len(everything) == 10  # a cell smaller than per_cell is listed whole
    for _, row in everything.iterrows():
        assert test.loc[row["data_row"] - 1, "raw"] == row["raw"]


def test_error_file_has_readable_columns(tmp_path):
    test, evaluation = toy_evaluation()
    write_csv(error_analysis(test, evaluation, 2, 1, seed=0), tmp_path / "errors.csv")
    lines = (tmp_path / "errors.csv").read_text().splitlines()
    assert lines[0] == '"section","data_row","actual","predicted","p_predicted","p_actual","raw","text"'
    assert lines[1] == '"most_confident_error",3,"negative","neutral",0.95,0.025,"Raw #2!","clean 2"'


# ------------------------------------------------------------------ model card
CARD = {"family": "logreg", "params": {"C": 0.5}, "cv_f1_macro_mean": 0.72, "cv_f1_macro_std": 0.01,
        "cv_folds": 5, "selected_by": "highest mean CV macro-F1",
        "candidates": {"logreg": {"cv_f1_macro_mean": 0.72, "cv_f1_macro_std": 0.01},
                       "naive_bayes": {"cv_f1_macro_mean": 0.70, "cv_f1_macro_std": 0.02}},
        "classes": MULTICLASS, "n_features": 100, "training_data_md5": "abc",
        "libraries": {"python": "3.11"}}
DATA = {"rows_out": 100, "train_rows": 80, "test_rows": 20,
        "class_counts": {"train": {"negative": 40, "neutral": 30, "positive": 10},
                         "test": {"negative": 10, "neutral": 6, "positive": 4}}}


def test_model_card_reports_data_model_cv_test_and_baselines():
    test, evaluation = toy_evaluation()
    baselines = {"vader": {"accuracy": 0.5, "f1_macro": 0.45},
                 "textblob": {"applicable": False, "reason": "labels are not sentiments"}}
    markdown = render_model_card(card=CARD, test=evaluation.metrics, data=DATA, baselines=baselines,
                                 baseline_rules={"vader": "compound >= 0.05 positive"},
                                 confusion=confusion_matrix(evaluation.y_true, evaluation.y_pred))
    assert "| negative | 40 | 10 |" in markdown
    assert "**Family:** `logreg`" in markdown and "`C=0.5`" in markdown
    assert "| **logreg** (selected) | 0.7200 | 0.0100 |" in markdown
    assert "| naive_bayes | 0.7000 | 0.0200 |" in markdown
    f1 = evaluation.metrics["f1_macro"]
    assert f"| vader | 0.5000 | 0.4500 | {f1 - 0.45:+.4f} |" in markdown
    assert "textblob: not applicable — labels are not sentiments" in markdown
    assert "vader: compound >= 0.05 positive" in markdown
    assert "Intended use" in markdown and "outnumbers positive 4.0 to 1" in markdown
    # neutral -> negative twice is the largest off-diagonal cell
    assert "**neutral** predicted as **negative** (2 test rows" in markdown
    again = render_model_card(card=CARD, test=evaluation.metrics, data=DATA, baselines=baselines,
                              baseline_rules={"vader": "compound >= 0.05 positive"},
                              confusion=confusion_matrix(evaluation.y_true, evaluation.y_pred))
    assert again == markdown


def test_model_card_prefers_the_cv_comparison_plot_and_copes_without_optional_files():
    test, evaluation = toy_evaluation()
    comparison = [{"family": "logreg", "cv_f1_macro_mean": 0.75, "cv_f1_macro_std": 0.03},
                  {"family": "naive_bayes", "cv_f1_macro_mean": 0.71, "cv_f1_macro_std": 0.02}]
    markdown = render_model_card(card=CARD, test=evaluation.metrics, cv_comparison=comparison)
    assert "| **logreg** (selected) | 0.7500 | 0.0300 |" in markdown
    assert "| naive_bayes | 0.7100 | 0.0200 |" in markdown
    assert "_No data report" in markdown and "_No baselines" in markdown
    without = render_model_card(card=CARD, test=evaluation.metrics)
    assert "| **logreg** (selected) | 0.7200 | 0.0100 |" in without


def test_long_curves_are_thinned_keeping_their_end_points():
    from sentiment_pipeline.pipeline.evaluate import MAX_CURVE_POINTS, compact_plot_json

    rows = [{"fpr": i / 999, "tpr": (i / 999) ** 0.5, "threshold": float("inf") if i == 0 else 1 - i / 999}
            for i in range(1000)]
    text = compact_plot_json({"roc": rows}, thin=True)
    curve = json.loads(text)["roc"]
    assert len(curve) == MAX_CURVE_POINTS
    assert curve[0] == {"fpr": 0.0, "tpr": 0.0, "threshold": None}
    assert curve[-1]["fpr"] == 1.0 and curve[-1]["tpr"] == 1.0
    assert text.count("\n") == MAX_CURVE_POINTS + 4  # one row per line, plus brackets
    # confusion rows are never thinned
    assert len(json.loads(compact_plot_json(rows))) == 1000


def test_labels_that_clash_as_file_names_are_refused(tmp_path):
    from sentiment_pipeline.pipeline.evaluate import EvaluationError, PlotFiles, evaluation_from_predictions

    classes = ["very negative", "very_negative", "positive"]
    y = np.array([0, 1, 2, 0, 1, 2])
    proba = np.eye(3)[y] * 0.8 + 0.2 / 3
    evaluation = evaluation_from_predictions(y, y, proba, classes, calibration_bins=5)
    plots = PlotFiles(confusion_normalized=tmp_path / "n.json", roc_dir=tmp_path / "roc",
                      precision_recall_dir=tmp_path / "pr", calibration=tmp_path / "c.json")
    with pytest.raises(EvaluationError, match="very negative.*very_negative"):
        log_with_dvclive(evaluation.metrics, y, y, classes, tmp_path / "m.json", tmp_path / "cm.json",
                         evaluation=evaluation, plots=plots)
    assert not (tmp_path / "m.json").exists()


def test_top_label_accuracy_is_that_of_the_most_probable_class_not_of_predict():
    from sentiment_pipeline.pipeline.evaluate import evaluation_from_predictions

    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 0, 1, 1])                # e.g. from balanced margins
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    metrics = evaluation_from_predictions(y_true, y_pred, proba, ["neg", "pos"], 10).metrics
    assert metrics["accuracy"] == 1.0 and metrics["top_label_accuracy"] == 0.75
    assert metrics["mean_confidence"] == pytest.approx(0.75)
