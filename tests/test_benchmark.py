"""The benchmark's parts on tiny inputs; nothing here is timed."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
from benchmarks import common
from benchmarks import pipeline_bench as benchmark
from typer.testing import CliRunner

from sentiment_pipeline.core.config import load_yaml

from .conftest import PROJECT_ROOT


def test_synthetic_reviews_are_seeded_short_and_three_class():
    first = benchmark.synthetic_reviews(3000, seed=1, chunk=1000)  # several chunks
    assert first.equals(benchmark.synthetic_reviews(3000, seed=1, chunk=1000))
    assert not first.equals(benchmark.synthetic_reviews(3000, seed=2, chunk=1000))
    assert len(first) == 3000 and set(first["label"]) == {"negative", "neutral", "positive"}
    words = first["text"].str.split().str.len()
    assert words.min() >= 5 and words.max() <= 42  # 5-40 words, plus sometimes "2 hours" or so
    shares = first["label"].value_counts(normalize=True)
    assert shares["negative"] > shares["neutral"] > shares["positive"] > 0.1
    # sentiment words follow the label, so a model has something to learn
    negative = first.loc[first["label"] == "negative", "text"]
    positive = first.loc[first["label"] == "positive", "text"]
    assert negative.str.contains(r"\bworst\b").mean() > positive.str.contains(r"\bworst\b").mean()


def test_naive_grids_have_the_breadth_of_the_project_grids():
    grids = benchmark.family_grids(load_yaml(PROJECT_ROOT / "params.yaml"))
    for family, project_grid in grids.items():
        naive = benchmark.naive_grid(family, project_grid, benchmark.naive_classifier(family, 0))
        # the naive recipe always resamples with SMOTE; the project also searches class weights
        project = benchmark.n_candidates({k: v for k, v in project_grid.items()
                                          if isinstance(v, list) and k != "resampling"})
        assert benchmark.n_candidates(naive) == project, family


def test_naive_grid_leaves_speed_settings_at_library_defaults():
    grid = {"select_k": [1000], "n_estimators": [100], "max_depth": [4, 6], "max_bin": [32],
            "colsample_bytree": [0.5]}
    naive = benchmark.naive_grid("xgboost", grid, benchmark.naive_classifier("xgboost", 0))
    assert naive == {"clf__n_estimators": [100], "clf__max_depth": [4, 6]}
    # a speed setting the project searches over is searched by the naive reference too
    grid["max_bin"] = [32, 64]
    assert benchmark.n_candidates(
        benchmark.naive_grid("xgboost", grid, benchmark.naive_classifier("xgboost", 0))) == 4


def test_quick_mode_shrinks_every_grid_to_two_candidates():
    params = load_yaml(PROJECT_ROOT / "params.yaml")
    small = benchmark.shrink_for_quick(copy.deepcopy(params))
    assert small["train"]["cv_folds"] == 3
    for family, grid in small["train"]["families"].items():
        assert benchmark.n_candidates(grid) <= 2, family
        assert all(n <= 20 for n in grid.get("n_estimators", []))


def test_naive_reference_on_a_tiny_corpus(separable_texts):
    train, test = separable_texts.iloc[:90], separable_texts.iloc[90:]
    grids = {"logreg": {"C": [1.0], "max_iter": [200]}, "naive_bayes": {"alpha": [0.1, 1.0]},
             "random_forest": {"n_estimators": [5]}, "xgboost": {"n_estimators": [5]}}
    result = benchmark.run_naive(train, test, grids, seed=0, folds=3, n_jobs=1)
    assert set(result["families"]) == set(grids)
    assert result["families"]["naive_bayes"]["candidates"] == 2
    assert result["family"] == max(result["families"], key=lambda f: result["families"][f]["cv_f1_macro"])
    assert 0.5 < result["test_f1_macro"] <= 1.0  # separable vocabularies


def test_growth_steps_run_in_fresh_processes_and_write_a_result(tmp_path):
    """The benchmark's cheapest whole run (growth alone, 300 rows): its numbers, and its tables in
    a valid result file under --results-dir."""
    output, results = tmp_path / "report.json", tmp_path / "results"
    run = CliRunner().invoke(benchmark.app, [
        "run", "--project", str(PROJECT_ROOT), "--skip-ours", "--skip-naive", "--growth-sizes", "300",
        "--output", str(output), "--workdir", str(tmp_path), "--results-dir", str(results)])
    assert run.exit_code == 0, run.output
    rows = json.loads(output.read_text())["growth"]
    assert [r["step"] for r in rows] == ["preprocess", "featurize"]
    for row in rows:
        assert row["size"] == 300 and row["max_rss_mb"] > 10 and row["rows_per_second"] > 0
        assert row["time_per_row_vs_smallest"] == 1.0
    assert rows[1]["n_features"] > 0

    result = common.read_result(results / "pipeline.json")  # ValueError if it breaks the schema
    assert result["command"] == "make bench"
    assert result["params_md5"] == common.params_md5(PROJECT_ROOT / "params.yaml")
    [growth] = result["tables"]
    assert growth["title"] == "Growth on synthetic reviews (each step in a fresh process)"
    assert [row[:2] for row in growth["rows"]] == [["300", "preprocess"], ["300", "featurize"]]
    assert "| 300 | preprocess |" in run.output  # the same cells as the markdown


def test_linearity_compares_each_step_with_its_smallest_size():
    rows = [{"size": 10, "step": "a", "us_per_row": 2.0}, {"size": 100, "step": "a", "us_per_row": 3.0},
            {"size": 10, "step": "b", "us_per_row": 5.0}]
    benchmark.add_linearity(rows)
    assert [r["time_per_row_vs_smallest"] for r in rows] == [1.0, 1.5, 1.0]


def test_markdown_report_names_every_part():
    stage = {"seconds": 2.0, "stage_seconds": 1.0, "max_rss_mb": 300.0, "children_max_rss_mb": 0.0}
    result = {"seconds": 10.0, "family": "logreg", "cv_f1_macro": 0.7, "test_f1_macro": 0.72,
              "peak_rss_mb": 300.0}
    report = {
        "quick": False, "runs": 3, "naive_runs": 1,
        "machine": {"cpu": "CPU", "cores": 2, "ram_gib": 8.0, "python": "3.11"},
        "ours": {**result, "stages": {"train@logreg": stage}, "stage_seconds_total": 2.0},
        "naive": {**result, "seconds": 30.0, "families": {"logreg": {
            "candidates": 5, "project_candidates": 5, "cv_f1_macro": 0.7, "seconds": 30.0}}},
        "growth": [{"size": 10000, "step": "preprocess", "seconds": 1.0, "rows_per_second": 1e4,
                    "us_per_row": 100.0, "time_per_row_vs_smallest": 1.0, "max_rss_mb": 280.0}],
    }
    text = benchmark.render_markdown(report)
    assert "**3.00x**" in text  # naive 30 s / ours 10 s
    assert "| train@logreg | 2.0 | 1.0 | 300 | 0 |" in text
    assert "| 10,000 | preprocess |" in text
    assert "| logreg | 5 / 5 |" in text


@pytest.mark.parametrize("text, sizes", [("1000,100", [100, 1000]), ("1e4", [10000])])
def test_growth_sizes_option(text, sizes):
    assert benchmark._parse_sizes(text) == sizes


def test_profile_records_are_summarised_by_median():
    runs = [{"seconds": s, "family": "logreg", "cv_f1_macro": 0.7, "test_f1_macro": 0.7,
             "stages": [{"stage": "featurize", "seconds": s, "stage_seconds": s - 1,
                         "max_rss_mb": 100.0 * s, "children_max_rss_mb": 0.0}]}
            for s in (3.0, 1.0, 2.0)]
    summary = benchmark.summarise_ours(runs)
    assert summary["seconds"] == 2.0
    assert summary["stages"]["featurize"] == {"seconds": 2.0, "stage_seconds": 1.0,
                                              "max_rss_mb": 200.0, "children_max_rss_mb": 0.0}
    assert summary["peak_rss_mb"] == 200.0


def test_growth_step_input_is_a_frame():  # the data written for the child processes
    frame = benchmark.synthetic_reviews(50, seed=0)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["text", "label"]


def test_naive_reference_uses_the_projects_char_ngrams_and_ensembles(separable_texts):
    train, test = separable_texts.iloc[:90], separable_texts.iloc[90:]
    grids = {"logreg": {"C": [1.0], "max_iter": [200]}, "naive_bayes": {"alpha": [0.1]}}
    result = benchmark.run_naive(train, test, grids, seed=0, folds=3, n_jobs=1, char_ngram_range=(3, 5),
                                 ensemble={"members": ["logreg", "naive_bayes"], "method": ["soft_vote", "stacking"]})
    assert set(result["families"]) == {"logreg", "naive_bayes", "ensemble (soft_vote)", "ensemble (stacking)"}
    assert result["families"]["ensemble (stacking)"]["best_params"] == {"members": ["logreg", "naive_bayes"]}
    assert 0.5 < result["test_f1_macro"] <= 1.0
    vectorizer = benchmark.naive_pipeline(benchmark.naive_classifier("logreg", 0), 0, (3, 5)).named_steps["tfidf"]
    assert [name for name, _ in vectorizer.transformer_list] == ["word", "char"]
