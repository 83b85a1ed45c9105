"""A throw-away git + DVC project running the real pipeline on the committed fixture."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import FIXTURES, PROJECT_ROOT

FAMILIES = ("linear_svm", "logreg", "naive_bayes", "random_forest", "sgd", "xgboost")
METRIC_FILES = ["metrics/download.json", "metrics/data.json", "metrics/features.json", "metrics/selection.json",
                "metrics/test.json", "metrics/ensemble.json", *(f"metrics/cv/{f}.json" for f in FAMILIES)]
CLASSES = ("negative", "neutral", "positive")  # of the fixture
# Git-tracked evaluation outputs beyond the metrics: each must exist and be byte-identical
# across two forced runs.
EVALUATION_FILES = ["metrics/baselines.json", "metrics/error_analysis.csv", "metrics/model_card.md",
                    "plots/confusion_matrix.json", "plots/confusion_matrix_normalized.json",
                    "plots/calibration.json", "plots/cv_comparison.json",
                    *(f"plots/roc/{c}.json" for c in CLASSES),
                    *(f"plots/precision_recall/{c}.json" for c in CLASSES)]


def small_params() -> dict:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["download"].update(source="file", path="data/external/reviews.csv")
    params["featurize"].update(max_features=2000, char_ngrams=False)
    params["featurize"]["resampling"]["k_neighbors"] = 3
    params["train"].update(cv_folds=3, n_jobs=1)
    families = params["train"]["families"]
    families["logreg"]["C"] = [0.5, 2.0]
    assert set(FAMILIES) == set(families)  # every family, SMOTE searched, as by default
    families["random_forest"].update(select_k=[200], n_estimators=[10])
    families["xgboost"].update(select_k=[200], n_estimators=[10], max_depth=[3])
    return params


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def run(self, *args: str) -> str:
        result = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def git(self, *args: str) -> str:
        return self.run("git", *args)

    def metrics(self) -> dict[str, str]:
        return {name: (self.root / name).read_text() for name in METRIC_FILES + EVALUATION_FILES}

    def output_hashes(self) -> dict[str, str]:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        return {out["path"]: out["md5"] for stage in lock["stages"].values()
                for out in stage.get("outs", [])}

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def write_params(self, params: dict) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def create_project(root: Path) -> Repo:
    """Copy the pipeline into ``root``, git/dvc-init it and commit (nothing run yet)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data/external").mkdir(parents=True)
    shutil.copy(FIXTURES / "airline_sample.csv", root / "data/external/reviews.csv")
    repo = Repo(root)
    repo.write_params(small_params())
    repo.git("init", "-q", "-b", "main")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.analytics", "false")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "project")
    return repo
