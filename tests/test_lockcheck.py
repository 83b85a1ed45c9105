import subprocess

import pytest
import yaml

from sentiment_pipeline.lockcheck import StaleLockError, check, stale_stages


def lock(model_md5="m1", timing_md5="t1", fit_time_md5="f1") -> dict:
    return {"schema": "2.0", "stages": {
        "train@logreg": {"cmd": "python -m sentiment_pipeline train --family logreg",
                         "outs": [{"path": "models/candidates/logreg", "md5": model_md5},
                                  {"path": "metrics/timing/logreg.json", "md5": timing_md5}]},
        "select": {"cmd": "python -m sentiment_pipeline select",
                   "deps": [{"path": "metrics/timing/logreg.json", "md5": timing_md5},
                            {"path": "models/candidates/logreg", "md5": model_md5}],
                   "outs": [{"path": "plots/cv_fit_time.json", "md5": fit_time_md5}]}}}


def test_measured_seconds_do_not_make_a_lock_stale():
    assert stale_stages(lock(), lock(timing_md5="t2", fit_time_md5="f2")) == []
    assert stale_stages(lock(), lock(model_md5="m2")) == ["select", "train@logreg"]


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "metrics/timing").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock()))
    (tmp_path / "metrics/test.json").write_text('{"f1_macro": 0.77}')
    (tmp_path / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.5}')
    (tmp_path / "plots/cv_fit_time.json").write_text("[]")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "results")
    return tmp_path


def test_a_rerun_that_only_changes_timings_passes(repo):
    (repo / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.7}')
    (repo / "plots/cv_fit_time.json").write_text('[{"family": "logreg"}]')
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(timing_md5="t2", fit_time_md5="f2")))
    check(repo)


def test_changed_metrics_or_lock_are_named(repo):
    (repo / "metrics/test.json").write_text('{"f1_macro": 0.70}')
    (repo / "plots/new.json").write_text("[]")
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(model_md5="m2")))
    with pytest.raises(StaleLockError) as info:
        check(repo)
    message = str(info.value)
    assert "select, train@logreg" in message
    assert "metrics/test.json" in message and "plots/new.json" in message
    assert "timing" not in message
