import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from sentiment_pipeline.core import paths
from sentiment_pipeline.review.report import (
    MARKER,
    ReportInputs,
    Snapshot,
    mermaid_bar_chart,
    metrics_diff_table,
    read_snapshot,
    render,
    y_axis_range,
)
from sentiment_pipeline.review.tolerance import Difference

from .pipeline_cache import pipeline_run


def snapshot(f1=0.74, acc=0.80, family="logreg", cv=None, per_class=None) -> Snapshot:
    cv = cv if cv is not None else {"logreg": 0.72, "naive_bayes": 0.70}
    test = {"accuracy": acc, "f1_macro": f1, "f1_weighted": acc}
    if per_class is not None:  # the shape of metrics/test.json
        test["per_class"] = {label: {"precision": 0.5, "f1": f1, "support": 10}
                             for label, f1 in per_class.items()}
    return Snapshot(
        test=test,
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
    assert "| **logreg** ✓ | — | 0.7200 | 0.0100 | new | fixed | 3 |" in md


def test_added_and_removed_families_and_metrics():
    current = snapshot(cv={"logreg": 0.72, "xgboost": 0.69})
    md = render(inputs(current=current, metrics_diff_md="| m |\n|--|\n| x |")).markdown
    assert "| xgboost | — | 0.6900 | 0.0100 | new | fixed | 3 |" in md
    assert "| naive_bayes | 0.7000 | — | — | removed | — | — |" in md


def test_a_dropped_familys_leftover_files_are_not_reported(tmp_path):
    summary = {"cv_f1_macro_mean": 0.7, "cv_f1_macro_std": 0.01, "n_candidates": 1}
    (tmp_path / "metrics/cv").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    for family in ("logreg", "random_forest", "ensemble"):
        (tmp_path / paths.cv_summary(family)).write_text(json.dumps({"family": family, **summary}))
    (tmp_path / "plots/cv_comparison.json").write_text(json.dumps(
        [{"family": f, **summary} for f in ("ensemble", "logreg")]))
    assert set(read_snapshot(tmp_path, None).cv) == {"logreg", "ensemble"}
    (tmp_path / "plots/cv_comparison.json").unlink()  # select has not run: every file found
    assert set(read_snapshot(tmp_path, None).cv) == {"logreg", "random_forest", "ensemble"}


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
    repo, _ = pipeline_run(tmp_path / "project")  # create_project + dvc repro
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
    assert "| **logreg** ✓ | 0.7200 | 0.7200 | 0.0100 | = 0.0000 | fixed | 3 | 0.35 | 2.6 |" in md
    assert "| naive_bayes | 0.7000 | 0.7000 | 0.0100 | = 0.0000 | fixed | 3 | — | — |" in md


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


# ------------------------------------------------------------------ charts
def charts(md: str) -> dict[str, dict]:
    """The mermaid xychart blocks of a report by title, each with its lines parsed, and where in
    the markdown it starts."""
    found, start = {}, 0
    while (start := md.find("```mermaid\n", start)) != -1:
        end = md.index("\n```", start)
        body = md[start:end].splitlines()[1:]
        assert body[0] == "xychart-beta"
        chart = {"at": start, "bar": None, "line": None}
        for row in body[1:]:
            key, _, rest = row.strip().partition(" ")
            chart[key] = rest
        low, high = chart["y-axis"].rsplit(" ", 3)[-3::2]
        chart["range"] = (float(low), float(high))
        for key in ("bar", "line"):
            if chart[key] is not None:
                chart[key] = [float(v) for v in chart[key].strip("[]").split(", ")]
        found[chart["title"].strip('"')] = chart
        start = end
    return found


def caption_after(md: str, chart: dict) -> str:
    return md[md.index("\n```\n", chart["at"]) + 5:].splitlines()[0]


def test_charts_compare_this_change_with_the_base():
    base = snapshot(cv={"logreg": 0.72, "naive_bayes": 0.70},
                    per_class={"negative": 0.89, "neutral": 0.64, "positive": 0.77})
    current = snapshot(cv={"logreg": 0.74, "naive_bayes": 0.69},
                       per_class={"negative": 0.90, "neutral": 0.6612345, "positive": 0.76})
    md = render(inputs(base=base, current=current, params_diff_md="| C |")).markdown
    found = charts(md)
    cv, per_class = found["CV macro-F1 per family"], found["Test F1 per class"]
    assert cv["x-axis"] == '"family" ["logreg", "naive_bayes"]'
    assert cv["y-axis"].startswith('"CV macro-F1" ')
    assert cv["bar"] == [0.74, 0.69] and cv["line"] == [0.72, 0.70]  # bars: this change
    assert "bar [0.7400, 0.6900]" in md and "line [0.7200, 0.7000]" in md
    assert per_class["x-axis"] == '"class" ["negative", "neutral", "positive"]'
    assert "bar [0.9000, 0.6612, 0.7600]" in md and "line [0.8900, 0.6400, 0.7700]" in md
    for chart in (cv, per_class):
        low, high = chart["range"]
        values = chart["bar"] + chart["line"]
        assert 0 <= low < min(values) and max(values) < high <= 1
        assert high - low <= 0.4  # chosen from the data, not 0 --> 1
        assert caption_after(md, chart) == "_Bars: this change; line: base `0123456789ab` (xychart draws no legend)._"
    # each chart right after the table it illustrates
    assert md.index("| test weighted F1 |") < per_class["at"] < md.index("### Metrics diff")
    assert md.index("| naive_bayes |") < cv["at"] < md.index("### Test confusion matrix")


def test_a_family_on_one_side_only_is_drawn_at_the_axis_floor_and_named():
    current = snapshot(cv={"logreg": 0.72, "xgboost": 0.69})
    md = render(inputs(current=current)).markdown
    cv = charts(md)["CV macro-F1 per family"]
    low, _ = cv["range"]
    assert cv["x-axis"] == '"family" ["logreg", "naive_bayes", "xgboost"]'
    assert cv["bar"] == [0.72, low, 0.69]  # naive_bayes: not in this change
    assert cv["line"] == [0.72, 0.70, low]  # xgboost: not in the base
    caption = caption_after(md, cv)
    assert "No base result for `xgboost`: the line drops to the axis floor there." in caption
    assert "Not in this change: `naive_bayes` (line only, no bar)." in caption


def test_first_run_charts_only_this_change():
    md = render(inputs(base=Snapshot(), current=snapshot(per_class={"neg": 0.8, "pos": 0.7}))).markdown
    found = charts(md)
    assert set(found) == {"CV macro-F1 per family", "Test F1 per class"}
    for chart in found.values():
        assert chart["line"] is None and chart["bar"]
    assert found["Test F1 per class"]["bar"] == [0.8, 0.7]
    assert caption_after(md, found["CV macro-F1 per family"]) == \
        "_Bars: this change (the base `0123456789ab` has no CV macro-F1 yet)._"


def test_no_per_class_chart_without_per_class_scores():
    """Runs from before per-class F1 was recorded: the CV chart only, and no error."""
    assert set(charts(render(inputs()).markdown)) == {"CV macro-F1 per family"}
    assert charts(render(inputs(current=Snapshot())).markdown) == {}


def test_chart_labels_are_always_quoted_and_cannot_break_the_string():
    lines = mermaid_bar_chart('a "quoted" title', ["random forest", "line", 'x"y'],
                              [0.5, 0.6, 0.7], "macro-F1")
    assert lines[0] == "```mermaid" and lines[1] == "xychart-beta" and lines[-1] == "```"
    assert "    title \"a 'quoted' title\"" in lines
    assert "    x-axis [\"random forest\", \"line\", \"x'y\"]" in lines
    assert "    y-axis \"macro-F1\" 0.45 --> 0.75" in lines
    assert "    bar [0.5000, 0.6000, 0.7000]" in lines


@pytest.mark.parametrize(("values", "expected"), [
    ([0.74, 0.76], (0.7, 0.8)),
    ([0.70], (0.65, 0.75)),  # a value on a step still gets room below
    ([0.99, 1.0], (0.95, 1.0)),  # clamped to [0, 1]
    ([0.0, 0.01], (0.0, 0.05)),
])
def test_y_axis_range_rounds_outwards_to_a_twentieth(values, expected):
    assert y_axis_range(values) == pytest.approx(expected)


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (("t", ["a", "b"], [0.5]), {}, "bars: 1 value(s) for 2 categories"),
    (("t", ["a", "b"], [0.5, 0.6]), {"line": [0.5, 0.6, 0.7]}, "line: 3 value(s) for 2 categories"),
    (("t", [], []), {}, "categories: need at least one"),
    (("t", ["a", "a"], [0.5, 0.6]), {}, "categories: duplicates"),
    (("", ["a"], [0.5]), {}, "title: must not be empty"),
    (("t", ["a"], [float("nan")]), {}, "bars: expected finite numbers"),
    (("t", ["a"], [None]), {"line": [None]}, "bars: no values to draw"),
])
def test_mermaid_bar_chart_rejects_bad_input_naming_the_argument(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mermaid_bar_chart(*args, "F1", **kwargs)
    with pytest.raises(ValueError, match="values: need at least one"):
        y_axis_range([])


def test_cv_table_names_the_resampling_strategy_that_won():
    current = snapshot(cv={"logreg": 0.72})
    current.cv["logreg"].update(best_params={"C": 1.0, "resampling": "smote"},
                                resampling_cv_f1_macro={"class_weight": 0.7150, "smote": 0.7200})
    md = render(inputs(current=current)).markdown
    assert "| **smote** 0.7200 / class_weight 0.7150 | 3 |" in md


def test_a_base_revision_with_the_ensemble_under_metrics_cv_is_read(tmp_path):
    """Revisions before the single train stage kept the ensemble's summary in metrics/cv/."""
    summary = {"cv_f1_macro_mean": 0.7728, "cv_f1_macro_std": 0.01, "n_candidates": 376}
    (tmp_path / "metrics/cv").mkdir(parents=True)
    (tmp_path / "metrics/cv/ensemble.json").write_text(json.dumps({"family": "ensemble", **summary}))
    assert read_snapshot(tmp_path, None).cv["ensemble"]["cv_f1_macro_mean"] == 0.7728


def test_measured_seconds_are_shown_only_beside_the_summary_their_run_wrote(tmp_path):
    from sentiment_pipeline.core.files import write_json, write_timing

    summary = {"family": "logreg", "cv_f1_macro_mean": 0.7, "cv_f1_macro_std": 0.01, "n_candidates": 1}
    write_json(summary, tmp_path / paths.cv_summary("logreg"))
    write_timing({"search_seconds": 2.5, "mean_fit_seconds": 0.4}, tmp_path / paths.train_timing("logreg"),
                 tmp_path / paths.cv_summary("logreg"))
    assert read_snapshot(tmp_path, None).timing["logreg"]["search_seconds"] == 2.5
    # DVC restored another run's summary from its cache: the seconds on disk are not its own
    write_json({**summary, "cv_f1_macro_mean": 0.71}, tmp_path / paths.cv_summary("logreg"))
    assert read_snapshot(tmp_path, None).timing == {}
