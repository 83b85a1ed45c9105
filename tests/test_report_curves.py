"""The PR report's ROC, precision-recall and reliability charts: resampling checked against
sklearn's areas, the comment size for 3 and 10 classes, and every chart rendered by mermaid."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import load_params
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.pipeline.evaluate import class_file_stem
from sentiment_pipeline.review import curves
from sentiment_pipeline.review import report as report_module
from sentiment_pipeline.review.curves import CurveError, Curves
from sentiment_pipeline.review.report import COMMENT_LIMIT, ReportInputs, Snapshot, read_snapshot, render

from .conftest import PROJECT_ROOT

MERMAID_BLOCK = re.compile(r"^```mermaid\n(.*?)^```$", re.M | re.S)


# ------------------------------------------------------------------ synthetic runs
def _binary_case(rng: np.random.Generator, separation: float, size: int = 1500):
    target = rng.integers(0, 2, size)
    return target, rng.normal(target * separation, 1.0)  # continuous: no tied scores


def class_curves(rng: np.random.Generator, separation: float) -> tuple[list, list, float, float]:
    """Rows as the evaluate stage writes them (dvclive's fields), with sklearn's exact areas."""
    target, score = _binary_case(rng, separation)
    fpr, tpr, _ = roc_curve(target, score)
    precision, recall, _ = precision_recall_curve(target, score)
    roc = [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr, strict=True)]
    pr = [{"precision": float(p), "recall": float(r)} for p, r in zip(precision, recall, strict=True)]
    return roc, pr, roc_auc_score(target, score), average_precision_score(target, score)


def calibration_rows(rng: np.random.Generator, low: float) -> list[dict]:
    centres = np.arange(low + 0.05, 1.0, 0.1)
    return [{"prob_pred": float(c), "prob_true": float(np.clip(c + rng.normal(0, 0.05), 0, 1))}
            for c in centres]


def synthetic_snapshot(labels: list[str], seed: int, separation: float) -> Snapshot:
    rng = np.random.default_rng(seed)
    found, per_class = Curves(calibration=calibration_rows(rng, 1 / len(labels))), {}
    for label in labels:
        roc, pr, auc, ap = class_curves(rng, separation + rng.uniform(0, 1))
        found.roc[class_file_stem(label)], found.precision_recall[class_file_stem(label)] = roc, pr
        per_class[label] = {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 1000,
                            "roc_auc": auc, "average_precision": ap}
    test = {"accuracy": 0.8, "f1_macro": 0.8, "f1_weighted": 0.8, "per_class": per_class}
    return Snapshot(test=test, selection={"family": "logreg"},
                    cv={"logreg": {"cv_f1_macro_mean": 0.8, "cv_f1_macro_std": 0.01}}, curves=found)


def synthetic_inputs(n_classes: int, curve_classes: int = 6) -> ReportInputs:
    """A change against a base with every section as full as n classes make it: per-class rows in
    the metrics diff, an n x n confusion matrix, labels that are not file names."""
    labels = [f"label {i} of {n_classes}" for i in range(n_classes)]
    diff_rows = [f"| metrics/test.json | per_class.{label}.{name} | 0.8123 | 0.8234 | +0.0111 |"
                 for label in labels for name in ("precision", "recall", "f1", "roc_auc", "average_precision")]
    confusion = pd.DataFrame(np.full((n_classes, n_classes), 123), index=pd.Index(labels, name="actual"),
                             columns=pd.Index(labels, name="predicted"))
    return ReportInputs(
        base_rev="0123456789abcdef", base=synthetic_snapshot(labels, 1, 1.0),
        current=synthetic_snapshot(labels, 2, 1.2), confusion=confusion,
        metrics_diff_md="\n".join(["| Path | Metric | base | workspace | Change |", "| --- |" * 5, *diff_rows]),
        params_diff_md="| Path | Param | HEAD | workspace |\n| --- | --- | --- | --- |\n"
                       "| params.yaml | train.families.logreg.C | [1] | [0.5, 1, 2] |",
        curve_classes=curve_classes)


def chart_titles(markdown: str) -> list[str]:
    return re.findall(r'^    title "(.*)"$', markdown, re.M)


# ------------------------------------------------------------------ resampling
def test_step_wise_roc_and_pr_integrate_to_sklearns_auc_and_average_precision():
    """The step functions the charts sample are the curves sklearn's areas integrate: on a fine
    grid their areas match roc_auc_score and average_precision_score."""
    rng = np.random.default_rng(0)
    fine = curves.grid(200_001)
    for separation in (0.3, 1.0, 2.5):
        roc, pr, auc, ap = class_curves(rng, separation)
        assert curves.step_area(curves.roc_on_grid(roc, fine), fine) == pytest.approx(auc, abs=1e-4)
        assert curves.step_area(curves.precision_recall_on_grid(pr, fine), fine) == pytest.approx(ap, abs=1e-4)


def test_step_wise_values_at_the_corners():
    roc = [{"fpr": 0, "tpr": 0}, {"fpr": 0, "tpr": 0.5}, {"fpr": 0.5, "tpr": 0.5},
           {"fpr": 0.5, "tpr": 1}, {"fpr": 1, "tpr": 1}]
    at = np.array([0.0, 0.25, 0.49, 0.5, 1.0])
    assert curves.roc_on_grid(roc, at).tolist() == [0.5, 0.5, 0.5, 1.0, 1.0]
    # recall 1 at precision 0.5; 0.5 at 0.8 or 0.6 (the more precise counts); 0.2 at 1
    pr = [{"recall": 1, "precision": 0.5}, {"recall": 0.5, "precision": 0.6},
          {"recall": 0.5, "precision": 0.8}, {"recall": 0.2, "precision": 1.0}]
    at = np.array([0.0, 0.2, 0.21, 0.5, 0.51, 1.0])
    assert curves.precision_recall_on_grid(pr, at).tolist() == [1.0, 1.0, 0.8, 0.8, 0.5, 0.5]


def test_reliability_is_linear_between_bins_and_flat_beyond_them():
    rows = [{"prob_pred": 0.45, "prob_true": 0.4}, {"prob_pred": 0.85, "prob_true": 0.9}]
    at = curves.calibration_grid(rows)
    assert at[0] == 0.45 and at[-1] == 1.0 and len(at) == 12
    values = curves.calibration_on_grid(rows, at)
    assert values[at.tolist().index(0.65)] == pytest.approx(0.65)  # half way
    assert values[-1] == 0.9  # held beyond the last bin
    assert curves.calibration_grid(rows, [{"prob_pred": 0.38, "prob_true": 0.3}])[0] == 0.35


@pytest.mark.parametrize(("rows", "message"), [
    ([], "plots/roc/a.json: no points"),
    ([{"fpr": 0.0, "tpr": 0.0}, {"fpr": "x", "tpr": 1.0}], "plots/roc/a.json: row 2: expected finite numbers 'fpr' and 'tpr'"),
    ([{"fpr": 0.0, "tpr": None}], "row 1"),
])
def test_a_bad_curve_file_is_named_with_its_row(rows, message):
    current = synthetic_snapshot(["a"], 0, 1.0)
    current.curves.roc["a"] = rows
    with pytest.raises(CurveError, match=re.escape(message)):
        render(ReportInputs(base_rev="0123456789abcdef", base=Snapshot(), current=current))


# ------------------------------------------------------------------ the report
def test_three_classes_get_a_reliability_chart_and_roc_and_pr_charts_per_class():
    inputs = synthetic_inputs(3)
    md = render(inputs).markdown
    assert len(md) < COMMENT_LIMIT
    assert chart_titles(md)[-7:] == ["Reliability (test split)"] + [
        f"{kind}: label {i} of 3 vs rest" for i in range(3) for kind in ("ROC", "Precision-recall")]
    block = MERMAID_BLOCK.findall(md)[-6]  # ROC of label 0: this change, then the base
    lines = re.findall(r"^    line \[(.*)\]$", block, re.M)
    stem = class_file_stem("label 0 of 3")
    at = curves.grid()
    for line, snapshot in zip(lines, (inputs.current, inputs.base), strict=True):
        expected = curves.roc_on_grid(snapshot.curves.roc[stem], at)
        assert [float(v) for v in line.split(", ")] == pytest.approx(expected, abs=5e-4)
    auc = inputs.current.test["per_class"]["label 0 of 3"]["roc_auc"]
    assert f"| label 0 of 3 | {inputs.base.test['per_class']['label 0 of 3']['roc_auc']:.4f} | {auc:.4f} |" in md
    assert "_Blue: this change; orange: base `0123456789ab`._" in md


def test_ten_classes_draw_the_classes_that_moved_most_and_stay_under_githubs_limit():
    inputs = synthetic_inputs(10, curve_classes=6)
    md = render(inputs).markdown
    assert len(md) < COMMENT_LIMIT
    drawn = [t.removeprefix("ROC: ").removesuffix(" vs rest") for t in chart_titles(md) if t.startswith("ROC:")]
    moved = {label: sum(abs(inputs.current.test["per_class"][label][k] - inputs.base.test["per_class"][label][k])
                        for k in ("roc_auc", "average_precision")) for label in inputs.current.test["per_class"]}
    assert set(drawn) == set(sorted(moved, key=moved.get, reverse=True)[:6])
    assert all(f"| {label} |" in md for label in moved)  # the table lists every class
    assert "not drawn:" in md
    every = render(synthetic_inputs(10, curve_classes=10)).markdown  # thinning alone suffices
    assert len(every) < COMMENT_LIMIT and len(chart_titles(every)) == len(chart_titles(md)) + 8


def test_over_the_comment_limit_the_per_class_charts_give_way(monkeypatch):
    inputs = synthetic_inputs(3)
    full = render(inputs).markdown
    monkeypatch.setattr(report_module, "COMMENT_LIMIT", len(full) - 1)
    md = render(inputs).markdown
    assert not any(t.startswith(("ROC", "Precision")) for t in chart_titles(md))
    assert "Reliability (test split)" in chart_titles(md)
    assert f"GitHub's {len(full) - 1:,}-character limit" in md


def test_first_run_draws_this_change_alone_and_says_so():
    md = render(ReportInputs(base_rev="0123456789abcdef", base=Snapshot(),
                             current=synthetic_snapshot(["neg", "pos"], 0, 1.0))).markdown
    assert "Blue: this change (the base `0123456789ab` has no ROC curve for neg)." in md
    reliability = next(b for b in MERMAID_BLOCK.findall(md) if "Reliability" in b)
    assert len(re.findall(r"^    line ", reliability, re.M)) == 2  # this change and the diagonal
    assert "Orange: perfect calibration" in md


def test_curves_are_read_at_a_revision_and_in_the_workspace(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    roc, pr, _, _ = class_curves(np.random.default_rng(0), 1.0)
    (tmp_path / paths.ROC_DIR).mkdir(parents=True)
    (tmp_path / paths.ROC_DIR / "neg.json").write_text(json.dumps({"roc": roc}))
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", "--allow-empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "roc")
    (tmp_path / paths.PRECISION_RECALL_DIR).mkdir()
    (tmp_path / paths.PRECISION_RECALL_DIR / "neg.json").write_text(json.dumps({"precision_recall": pr}))
    (tmp_path / paths.ROC_DIR / "neg.json").write_text(json.dumps({"roc": roc[:5]}))
    at_head, workspace = read_snapshot(tmp_path, "HEAD").curves, read_snapshot(tmp_path, None).curves
    assert at_head.roc == {"neg": roc} and not at_head.precision_recall and at_head.calibration is None
    assert workspace.roc == {"neg": roc[:5]} and workspace.precision_recall == {"neg": pr}
    assert read_snapshot(tmp_path, "HEAD~1").curves.empty
    (tmp_path / paths.CALIBRATION).write_text(json.dumps({"bins": []}))
    with pytest.raises(CurveError, match=r"plots/calibration.json: expected a 'calibration' list"):
        read_snapshot(tmp_path, None)


@pytest.mark.parametrize("value", ["-1", "51", "many"])
def test_curve_classes_is_validated_naming_the_key(tmp_path, value):
    params = tmp_path / "params.yaml"
    params.write_text(f"report:\n  curve_classes: {value}\n")
    with pytest.raises(ConfigError, match=r"report\.curve_classes"):
        load_params(params)
    params.write_text("report:\n  curve_classes: 0\n")
    assert load_params(params).report.curve_classes == 0


# ------------------------------------------------------------------ rendered by mermaid
MERMAID_DIR = PROJECT_ROOT / ".tools/mermaid"
MMDC = MERMAID_DIR / "node_modules/.bin/mmdc"
RENDER_SCRIPT = PROJECT_ROOT / "tests/mermaid/render.cjs"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run installs nodejs, npm and chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """mermaid-cli (make mermaid-cli: once, then cached in .tools/mermaid) and Debian's Chromium."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found:
        _unavailable("no chromium to render mermaid charts in (Debian: chromium)")
    if not (shutil.which("node") and shutil.which("npm")):
        _unavailable("mermaid-cli needs node and npm (Debian: nodejs npm)")
    result = subprocess.run(["make", "--no-print-directory", "mermaid-cli"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not MMDC.is_file():
        pytest.fail(f"make mermaid-cli failed: {result.stdout}{result.stderr}")
    return found


def render_charts(chromium: str, charts: list[str], tmp_path) -> list[dict]:
    """Each chart through mermaid.render in one Chromium page (tests/mermaid/render.cjs)."""
    source = tmp_path / "charts.json"
    source.write_text(json.dumps(charts), encoding="utf-8")
    env = {**os.environ, "NODE_PATH": str(MERMAID_DIR / "node_modules"), "CHROMIUM": chromium}
    result = subprocess.run(["node", str(RENDER_SCRIPT), str(source)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def mmdc(chromium: str, markdown: str, directory) -> subprocess.CompletedProcess:
    """mermaid-cli on a markdown file: every ```mermaid block parsed and drawn to its own SVG."""
    directory.mkdir()
    (directory / "report.md").write_text(markdown, encoding="utf-8")
    config = directory / "puppeteer.json"
    # --no-sandbox: Chromium refuses to start its sandbox as root (containers, CI images)
    config.write_text(json.dumps({"executablePath": chromium, "args": ["--no-sandbox", "--disable-gpu"]}))
    return subprocess.run([str(MMDC), "--quiet", "--puppeteerConfigFile", str(config), "--input",
                           "report.md", "--output", "rendered.md"], cwd=directory,
                          capture_output=True, text=True, timeout=300)


def fenced(*charts: str) -> str:
    return "".join(f"```mermaid\n{chart}```\n\n" for chart in charts)


@pytest.mark.e2e
def test_mermaid_renders_every_chart_of_the_report(chromium, tmp_path):
    real = read_snapshot(PROJECT_ROOT, "HEAD")  # the committed run of this repository (3 classes)
    reports = {"three": render(synthetic_inputs(3)).markdown,
               "ten": render(synthetic_inputs(10)).markdown,
               "real": render(ReportInputs(base_rev="HEAD", base=real, current=real)).markdown}
    charts = [(name, block) for name, md in reports.items() for block in MERMAID_BLOCK.findall(md)]
    assert len(charts) == 9 + 15 + 9  # 2 bar charts, the reliability chart, ROC and PR per class
    results = render_charts(chromium, [block for _, block in charts], tmp_path)
    refused = [f"{name}: {result['error']}\n{block}" for (name, block), result in zip(charts, results, strict=True)
               if not result["ok"]]
    assert not refused, "mermaid rejected:\n" + "\n".join(refused)
    assert all('aria-roledescription="xychart"' in result["svg"] for result in results)
    curves_drawn = [r["svg"] for (_, block), r in zip(charts, results, strict=True) if "plotColorPalette" in block]
    assert curves_drawn and all("#f97316" in svg for svg in curves_drawn)  # the caption's colours apply


@pytest.mark.e2e
def test_mermaid_cli_agrees_and_a_malformed_chart_fails(chromium, tmp_path):
    """mmdc draws the three kinds of curve chart; a series cut short is refused by mmdc and by
    the one-page renderer alike (the check above can fail)."""
    blocks = MERMAID_BLOCK.findall(render(synthetic_inputs(3)).markdown)
    kinds = [next(b for b in blocks if marker in b) for marker in ("Reliability", '"ROC', '"Precision')]
    drawn = mmdc(chromium, fenced(*kinds), tmp_path / "good")
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert len(list((tmp_path / "good").glob("rendered-*.svg"))) == 3
    broken = re.sub(r"^(    line \[[^\]]*)\]$", r"\1", kinds[1], count=1, flags=re.M)
    refused = mmdc(chromium, fenced(broken), tmp_path / "broken")
    assert refused.returncode != 0 and "Parse error" in refused.stderr
    result = render_charts(chromium, [broken], tmp_path)[0]
    assert not result["ok"] and "Parse error" in result["error"]
