"""The CI cache mechanism, locally: a fresh clone with the previous run's DVC cache restored
(what actions/cache does in .github/actions/dvc-cache) re-runs only what a commit changed."""

import shutil

import pytest

from .pipeline_cache import pipeline_run
from .pipeline_repo import Repo

pytestmark = pytest.mark.e2e


def stages_run(log: str) -> set[str]:
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}


def test_a_pull_request_changing_one_grid_reruns_only_training(tmp_path):
    base, first = pipeline_run(tmp_path / "base")  # create_project + dvc repro, and its output
    assert "train" in stages_run(first) and "download" in stages_run(first)
    base.git("add", "-A")
    base.git("commit", "-qm", "main: results")
    saved_cache = tmp_path / "saved-cache"  # actions/cache saves .dvc/cache after main's run
    shutil.copytree(base.root / ".dvc/cache", saved_cache)

    params = base.params()
    params["train"]["families"]["logreg"]["C"] = [0.25, 4.0]
    base.write_params(params)
    base.git("commit", "-qam", "pull request: another logreg grid")

    pull_request = Repo(tmp_path / "clone")
    base.run("git", "clone", "-q", str(base.root), str(pull_request.root))
    assert not (pull_request.root / "data/raw").exists()  # a fresh checkout has no outputs
    shutil.copytree(saved_cache, pull_request.root / ".dvc/cache")  # actions/cache restores it
    pull_request.dvc("checkout", "--allow-missing")
    log = pull_request.dvc("repro")
    # the data stages and the baselines come from the cache
    assert stages_run(log) == {"train", "ensemble", "select", "evaluate"}, log
    assert "up to date" in pull_request.dvc("status")
    assert (pull_request.root / "models/final/model.joblib").is_file()

    # without the cache, the same clone state re-runs the data stages the cache gave above (the
    # stages from train on run either way)
    cold = Repo(tmp_path / "cold")
    base.run("git", "clone", "-q", str(base.root), str(cold.root))
    log = cold.dvc("repro", "featurize")
    assert stages_run(log) == {"download", "preprocess", "featurize"}, log
