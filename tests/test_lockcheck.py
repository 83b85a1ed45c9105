import json
import subprocess

import pytest
import yaml

from sentiment_pipeline.review.lockcheck import StaleLockError, check, stage_differences

CODE = "src/sentiment_pipeline/pipeline/train.py"


def lock(model_md5="m1", code_md5="c1", folds=5) -> dict:
    return {"schema": "2.0", "stages": {
        "train": {"cmd": "python -m sentiment_pipeline train",
                  "deps": [{"path": CODE, "md5": code_md5},
                           {"path": "data/processed", "md5": "d1.dir"}],
                  "params": {"params.yaml": {"train.cv_folds": folds}},
                  "outs": [{"path": "models/candidates", "md5": model_md5}]},
        "select": {"cmd": "python -m sentiment_pipeline select",
                   "deps": [{"path": "models/candidates", "md5": model_md5}],
                   "outs": [{"path": "models/final", "md5": "f1.dir"}]}}}


def test_computed_outputs_are_not_compared_by_hash():
    # A model's bytes follow the CPU's last bits; the metrics computed from it are compared.
    assert stage_differences(lock(), lock(model_md5="m2")) == {}


def test_code_params_and_data_must_match_exactly_and_are_named():
    assert stage_differences(lock(), lock(code_md5="c2")) == {"train": [f"dep {CODE}"]}
    assert stage_differences(lock(), lock(folds=3)) == {"train": ["params train.cv_folds"]}
    changed_data = lock()
    changed_data["stages"]["train"]["deps"][1]["md5"] = "d2.dir"
    assert stage_differences(lock(), changed_data) == {"train": ["dep data/processed"]}
    removed_out = lock()
    removed_out["stages"]["train"]["outs"].pop(0)
    assert stage_differences(lock(), removed_out) == {"train": ["out models/candidates"]}


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
    (tmp_path / ".gitignore").write_text("/metrics/timing/\n")  # as the project's
    (tmp_path / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.5}')
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "results")
    return tmp_path


def test_an_unchanged_rerun_passes_with_one_line_saying_what_matched(repo):
    assert check(repo) == ("dvc.lock matches HEAD (2 stages) and 2 result files under metrics/ and plots/ "
                           "match within 5e-05")


def test_a_rerun_that_only_changes_timings_and_model_bytes_passes(repo):
    (repo / "metrics/timing/logreg.json").write_text('{"search_seconds": 2.7}')  # git-ignored
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock(model_md5="m2")))
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
    with pytest.raises(StaleLockError, match=rf"train \(dep {CODE}\)"):
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
