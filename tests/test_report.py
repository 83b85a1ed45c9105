import json
import subprocess
import sys

import pandas as pd
import pytest

from sentiment_pipeline.report import MARKER, ReportInputs, Snapshot, metrics_diff_table, render
from sentiment_pipeline.tolerance import Difference

from .pipeline_repo import create_project


def snapshot(f1=0.74, acc=0.80, family="logreg", cv=None) -> Snapshot:
    cv = cv if cv is not None else {"logreg": 0.72, "naive_bayes": 0.70}
    return Snapshot(
        test={"accuracy": acc, "f1_macro": f1, "f1_weighted": acc},
        selection={"family": family},
        cv={name: {"cv_f1_macro_mean": mean, "cv_f1_macro_std": 0.01, "n_candidates": 3}
            for name, mean in cv.items()},
    )


def inputs(**overrides) -> ReportInputs:
    base = dict(base_rev="0123456789abcdef", base=snapshot(), current=snapshot(),
                metrics_diff_md="", params_diff_md="", confusion=None)
    return ReportInputs(**{**base, **overrides})


def test_improvement_shows_deltas_with_arrows():
    md = render(inputs(current=snapshot(f1=0.76, acc=0.79),
                       metrics_diff_md="| Path | Metric |\n|--|--|\n| metrics/test.json | f1_macro |")).markdown
    assert md.startswith(MARKER)
    assert "| test macro-F1 | 0.7400 | 0.7600 | ▲ +0.0200 |" in md
    assert "| test accuracy | 0.8000 | 0.7900 | ▼ -0.0100 |" in md
    assert "| metrics/test.json | f1_macro |" in md
    assert "Nothing changed" not in md


def test_first_run_without_base_metrics():
    md = render(inputs(base=Snapshot(), metrics_diff_md="| a |\n|--|\n| x |")).markdown
    assert "has no metrics yet" in md
    assert "| test macro-F1 | — | 0.7400 | new |" in md
    assert "| **logreg** ✓ | — | 0.7200 | 0.0100 | new | 3 |" in md


def test_added_and_removed_families_and_metrics():
    current = snapshot(cv={"logreg": 0.72, "xgboost": 0.69})
    md = render(inputs(current=current, metrics_diff_md="| m |\n|--|\n| x |")).markdown
    assert "| xgboost | — | 0.6900 | 0.0100 | new | 3 |" in md
    assert "| naive_bayes | 0.7000 | — | — | removed | — |" in md


def test_nothing_changed_says_so():
    md = render(inputs()).markdown
    assert "**Nothing changed**" in md
    assert "No metric changed." in md and "No parameter changed." in md
    assert "= 0.0000" in md


def test_regression_gate(monkeypatch):
    dropped = inputs(current=snapshot(f1=0.72), max_f1_macro_drop=0.01)
    result = render(dropped)
    assert result.regression and "dropped by 0.0200" in result.regression
    assert "Regression gate failed" in result.markdown
    assert render(inputs(current=snapshot(f1=0.735), max_f1_macro_drop=0.01)).regression is None
    assert render(inputs(current=snapshot(f1=0.5), max_f1_macro_drop=None)).regression is None


def test_confusion_matrix_and_wall_time():
    confusion = pd.DataFrame([[5, 1], [2, 7]], index=pd.Index(["neg", "pos"], name="actual"),
                             columns=pd.Index(["neg", "pos"], name="predicted"))
    md = render(inputs(confusion=confusion, wall_time_seconds=187.4)).markdown
    assert "| neg | **5** | 1 |" in md and "| pos | 2 | **7** |" in md
    assert "Pipeline wall time: 3m 07s" in md


@pytest.mark.e2e
def test_report_between_two_real_pipeline_runs(tmp_path):
    repo = create_project(tmp_path / "project")
    repo.dvc("repro")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "default params")
    params = repo.params()
    params["train"]["families"]["logreg"]["C"] = [0.05]  # a much weaker model
    params["report"]["max_f1_macro_drop"] = 0.0
    repo.write_params(params)
    repo.dvc("repro")

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_pipeline", "report", "--output", "report.md",
         "--wall-time", "42", "--fail-on-regression"],
        cwd=repo.root, env=repo.env, capture_output=True, text=True, timeout=300)
    md = (repo.root / "report.md").read_text()
    assert "train.families.logreg.C" in md and "[0.05]" in md
    assert "metrics/cv/logreg.json" in md
    cv_new = json.loads((repo.root / "metrics/cv/logreg.json").read_text())["cv_f1_macro_mean"]
    assert f"{cv_new:.4f}" in md
    assert "▼" in md or "▲" in md
    assert "Pipeline wall time: 0m 42s" in md
    # the gate is at 0.0: any drop fails, and the exit code says so
    test_drop = "Regression gate failed" in md
    assert (result.returncode == 1) == test_drop, result.stderr

    repo.git("checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots")
    repo.dvc("checkout", "--force")
    repo.run(sys.executable, "-m", "sentiment_pipeline", "report", "--output", "same.md")
    assert "**Nothing changed**" in (repo.root / "same.md").read_text()


def test_cv_table_shows_the_measured_search_time():
    current = snapshot()
    current.timing = {"logreg": {"mean_fit_seconds": 0.347, "search_seconds": 2.61}}
    md = render(inputs(current=current)).markdown
    assert "| **logreg** ✓ | 0.7200 | 0.7200 | 0.0100 | = 0.0000 | 3 | 0.35 | 2.6 |" in md
    assert "| naive_bayes | 0.7000 | 0.7000 | 0.0100 | = 0.0000 | 3 | — | — |" in md


def test_metrics_that_moved_less_than_the_tolerance_are_left_out():
    diff = {"metrics/test.json": {"f1_macro": {"old": 0.7713, "new": 0.771301, "diff": 1e-6},
                                  "accuracy": {"old": 0.8293, "new": 0.8301, "diff": 0.0008},
                                  "ece": {"old": None, "new": 0.035}},
            "metrics/timing/logreg.json": {"search_seconds": {"old": 2.5, "new": 2.7, "diff": 0.2}}}
    table, hidden = metrics_diff_table(diff, "base")
    assert hidden == 1
    assert "| metrics/test.json | accuracy | 0.8293 | 0.8301 | +0.0008 |" in table
    assert "| metrics/test.json | ece | — | 0.035 | — |" in table
    assert "f1_macro" not in table and "timing" not in table
    assert metrics_diff_table({"m.json": {"a": {"old": 1.0, "new": 1.0 + 1e-9}}}, "base") == ("", 1)


def test_last_bit_differences_from_another_runner_say_nothing_changed():
    md = render(inputs(differences=[], metrics_within_tolerance=12)).markdown
    assert "**Nothing changed**" in md and "12 metric value(s) moved by less than 5e-05" in md
    moved = [Difference("plots/roc/neutral.json", "[3].tpr", 0.1, 0.2)]
    assert "Nothing changed" not in render(inputs(differences=moved)).markdown
