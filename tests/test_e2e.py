"""End to end: the real `dvc repro` on a small fixture in a temporary git repository (the forced
re-runs, bit for bit: test_e2e_rerun.py, a file of its own to run beside this one)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .pipeline_cache import committed_run
from .pipeline_repo import CLASSES, EVALUATION_FILES, METRIC_FILES, Repo

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return committed_run(tmp_path_factory.mktemp("project"))


def test_repro_produces_every_output_and_an_up_to_date_lock(repo):
    assert "up to date" in repo.dvc("status")
    for name in ["data/raw/reviews.csv", "data/processed/train.csv", "data/features/X_train.npz",
                 "models/vectorizer/tfidf.joblib", "models/final/model.joblib",
                 "models/final/model_card.json", "plots/confusion_matrix.json",
                 *(f"models/candidates/{f}/cv_results.csv" for f in
                   ("logreg", "naive_bayes", "random_forest", "xgboost"))]:
        assert (repo.root / name).is_file(), name
    test = json.loads((repo.root / "metrics/test.json").read_text())
    assert set(test["per_class"]) == {"negative", "neutral", "positive"}
    # 300 real tweets: well above the 0.33 of guessing, far from perfect
    assert 0.45 < test["accuracy"] < 1.0
    selection = json.loads((repo.root / "metrics/selection.json").read_text())
    cv = {path.stem: json.loads(path.read_text())["cv_f1_macro_mean"]
          for path in [*(repo.root / "metrics/cv").glob("*.json"), repo.root / "metrics/ensemble.json"]}
    assert {"logreg", "naive_bayes", "random_forest", "xgboost"} <= cv.keys()
    assert selection["family"] == max(cv, key=cv.get)
    card = json.loads((repo.root / "models/final/model_card.json").read_text())
    assert card["family"] == selection["family"]
    assert card["classes"] == ["negative", "neutral", "positive"]


def test_evaluation_outputs_cover_every_class_and_the_baselines(repo):
    for name in EVALUATION_FILES:
        assert (repo.root / name).is_file(), name
    test = json.loads((repo.root / "metrics/test.json").read_text())
    assert 0.5 < test["roc_auc_macro"] <= 1.0 and 0.0 <= test["ece"] < 1.0
    assert all("roc_auc" in test["per_class"][c] for c in CLASSES)
    baselines = json.loads((repo.root / "metrics/baselines.json").read_text())
    assert set(baselines) == {"vader", "textblob"}
    assert all(0.0 < scores["f1_macro"] < 1.0 for scores in baselines.values())
    card = (repo.root / "metrics/model_card.md").read_text()
    assert "## Baselines" in card and "| vader |" in card and "## Intended use" in card
    errors = (repo.root / "metrics/error_analysis.csv").read_text().splitlines()
    assert errors[0].startswith('"section","data_row","actual","predicted"') and len(errors) > 20


def test_metrics_and_plots_are_git_tracked_and_data_is_not(repo):
    tracked = set(repo.git("ls-files").split())
    assert set(METRIC_FILES) <= tracked
    assert {"plots/confusion_matrix.json", "plots/class_distribution.json"} <= tracked
    assert set(EVALUATION_FILES) <= tracked
    assert "dvc.lock" in tracked
    outputs = [name for name in tracked if name.startswith(("data/raw", "data/processed", "models/"))
               and not name.endswith(".gitignore")]
    assert outputs == []
    assert "test.json" in repo.dvc("metrics", "show")
    plots = json.loads(repo.dvc("plots", "show", "--json"))
    assert "plots/confusion_matrix.json" in plots["data"] and not plots.get("errors")
    assert "plots/class_distribution.json" in plots["data"]
    assert {name for name in EVALUATION_FILES if name.startswith("plots/")} <= set(plots["data"])
    # dvc's confusion_normalized template divides by the total of the y field: the actual class
    spec = plots["data"]["plots/confusion_matrix_normalized.json"][0]["content"]["spec"]
    totals = next(step for step in spec["transform"] if "joinaggregate" in step)
    assert totals["groupby"] == ["actual"]
    assert "baselines.json" in repo.dvc("metrics", "show")


def check_lock(repo: Repo) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", "check-lock"], cwd=repo.root,
                          env=repo.env, capture_output=True, text=True, timeout=120)


def test_changing_one_family_grid_reruns_training_not_the_data_stages(repo):
    params = repo.params()
    params["train"]["families"]["naive_bayes"]["alpha"] = [0.5]
    repo.write_params(params)
    try:
        changed = json.loads(repo.dvc("status", "--json"))
        # select's params name the families it chooses among (train.families as a whole)
        assert set(changed) == {"train", "select"}
        log = repo.dvc("repro")
        running = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}
        assert running == {"train", "ensemble", "select", "evaluate"}
        # the committed lock is now stale, and check-lock says which stage and why
        stale = check_lock(repo)
        assert stale.returncode == 1
        assert "train (params train.families)" in stale.stderr
    finally:
        repo.git("checkout", "--", "params.yaml", "dvc.lock", "metrics", "plots")
        repo.dvc("checkout", "--force")


def test_exp_run_set_param_with_a_grid_list_a_scalar_and_a_family_dropped(repo):
    repo.dvc("exp", "run", "--set-param", "train.families.logreg.C=[1e-06,1.5]",
             "--set-param", "featurize.min_df=1", "--set-param", "~train.families.random_forest",
             "--set-param", "train.ensemble.members=[linear_svm,logreg,naive_bayes,xgboost]")
    params = repo.params()
    assert params["featurize"]["min_df"] == 1
    assert "random_forest" not in params["train"]["families"]
    # DVC cleared the train stage's outputs before it ran: nothing of the dropped family is left
    assert not (repo.root / "metrics/cv/random_forest.json").exists()
    compared = [row["family"] for row in json.loads((repo.root / "plots/cv_comparison.json").read_text())]
    assert "random_forest" not in compared and {"logreg", "ensemble"} <= set(compared)
    cv = json.loads((repo.root / "metrics/cv/logreg.json").read_text())
    assert cv["n_candidates"] == 2 * 2  # two Cs, each with class weights and with SMOTE
    table = (repo.root / "models/candidates/logreg/cv_results.csv").read_text()
    assert "1e-06" in table and "1.5" in table
    assert "up to date" in repo.dvc("status")
    experiments = json.loads(repo.dvc("exp", "show", "--json"))
    assert len(experiments) >= 1


def test_every_stage_depends_on_the_modules_of_the_classes_in_the_models_it_reads(repo):
    """The classes pickled in a stage's model inputs run when the stage unpickles them: their
    modules (and what those import) must be among its deps, or a change to, say, the ensemble's
    vote would leave metrics/test.json stale."""
    from .test_dvc_deps import missing_deps, model_files, pickled_modules, stages

    checked = 0
    for name, stage in stages(repo.root / "dvc.yaml").items():
        modules = set().union(*(pickled_modules(f) for f in model_files(repo.root, stage)), set())
        checked += bool(modules)
        missing = missing_deps(name, stage, modules)
        assert not missing, f"dvc.yaml stage '{name}' unpickles classes of {', '.join(missing)} but does not list it"
    assert checked >= 3  # ensemble, select, evaluate


def test_a_comment_in_the_ensemble_module_invalidates_every_stage_that_loads_an_ensemble(repo):
    module = repo.root / "src/sentiment_pipeline/pipeline/ensemble.py"
    original = module.read_text()
    module.write_text(original + "# a comment\n")
    try:
        changed = set(json.loads(repo.dvc("status", "--json")))
    finally:
        module.write_text(original)
    assert {"ensemble", "select", "evaluate"} <= changed
    assert not changed & {"download", "preprocess", "featurize", "train", "baselines"}
