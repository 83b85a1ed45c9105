import json
import subprocess

import pytest
import yaml

from sentiment_pipeline.lockcheck import StaleLockError, check, stage_differences, stale_stages

CODE = "src/sentiment_pipeline/train.py"


def lock(model_md5="m1", timing_md5="t1", fit_time_md5="f1", code_md5="c1", folds=5) -> dict:
    return {"schema": "2.0", "stages": {
        "train@logreg": {"cmd": "python -m sentiment_pipeline train --family logreg",
                         "deps": [{"path": CODE, "md5": code_md5},
                                  {"path": "data/processed", "md5": "d1.dir"}],
                         "params": {"params.yaml": {"train.cv_folds": folds}},
                         "outs": [{"path": "models/candidates/logreg", "md5": model_md5},
                                  {"path": "metrics/timing/logreg.json", "md5": timing_md5}]},
        "select": {"cmd": "python -m sentiment_pipeline select",
                   "deps": [{"path": "metrics/timing/logreg.json", "md5": timing_md5},
                            {"path": "models/candidates/logreg", "md5": model_md5}],
                   "outs": [{"path": "plots/cv_fit_time.json", "md5": fit_time_md5}]}}}


def test_measured_seconds_and_computed_outputs_are_not_compared_by_hash():
    assert stale_stages(lock(), lock(timing_md5="t2", fit_time_md5="f2")) == []
    # A model's bytes follow the CPU's last bits; the metrics computed from it are compared.
    assert stale_stages(lock(), lock(model_md5="m2")) == []


def test_code_params_and_data_must_match_exactly_and_are_named():
    assert stage_differences(lock(), lock(code_md5="c2")) == {"train@logreg": [f"dep {CODE}"]}
    assert stage_differences(lock(), lock(folds=3)) == {"train@logreg": ["params train.cv_folds"]}
    changed_data = lock()
    changed_data["stages"]["train@logreg"]["deps"][1]["md5"] = "d2.dir"
    assert stage_differences(lock(), changed_data) == {"train@logreg": ["dep data/processed"]}
    removed_out = lock()
    removed_out["stages"]["train@logreg"]["outs"].pop(0)
    assert stage_differences(lock(), removed_out) == {"train@logreg": ["out models/candidates/logreg"]}


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"})


TEST_METRICS = {"accuracy": 0.8293, "f1_macro": 0.7713, "support": 2847}


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "metrics/timing").mkdir(parents=True)
    (tmp_path / "plots").mkdir()
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock()))
    (tmp_path / "metrics/test.json").write_text(json.dumps(TEST_METRICS))
    (tmp_path / "metrics/model_card.md").write_text("| logreg | 0.7430 | 0.0082 |\n")
    (tmp_path / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.5}')
    (tmp_path / "plots/cv_fit_time.json").write_text("[]")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "results")
    return tmp_path


def test_an_unchanged_rerun_passes(repo):
    check(repo)


def test_a_rerun_that_only_changes_timings_and_model_bytes_passes(repo):
    (repo / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.7}')
    (repo / "plots/cv_fit_time.json").write_text('[{"family": "logreg"}]')
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(timing_md5="t2", fit_time_md5="f2", model_md5="m2")))
    check(repo)


def test_values_within_the_tolerance_pass(repo):
    (repo / "metrics/test.json").write_text(json.dumps({**TEST_METRICS, "f1_macro": 0.7713 + 2e-5}))
    (repo / "metrics/model_card.md").write_text("| logreg | 0.7431 | 0.0082 |\n")  # rounding of 0.74305
    check(repo)


def test_values_beyond_the_tolerance_are_named_with_both_values(repo):
    (repo / "metrics/test.json").write_text(json.dumps({**TEST_METRICS, "f1_macro": 0.7702}))
    with pytest.raises(StaleLockError) as info:
        check(repo)
    message = str(info.value)
    assert "metrics/test.json f1_macro: 0.7713 committed, 0.7702 produced" in message
    assert "dvc.lock differs" not in message
    # a changed count is never within a tolerance
    (repo / "metrics/test.json").write_text(json.dumps({**TEST_METRICS, "support": 2846}))
    with pytest.raises(StaleLockError, match="support: 2847 committed, 2846 produced"):
        check(repo, tolerance=0.5)


def test_a_stale_lock_fails_even_when_the_results_match(repo):
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(code_md5="c2")))
    with pytest.raises(StaleLockError, match=rf"train@logreg \(dep {CODE}\)"):
        check(repo)


def test_new_and_missing_result_files_are_named(repo):
    (repo / "plots/new.json").write_text("[]")
    (repo / "metrics/model_card.md").unlink()
    with pytest.raises(StaleLockError) as info:
        check(repo)
    message = str(info.value)
    assert "plots/new.json: 'absent' committed, 'present' produced" in message
    assert "metrics/model_card.md: 'present' committed, 'absent' produced" in message
    assert "timing" not in message
