"""The experiment workflow (.github/workflows/experiment.yml): linted, least privilege, and its
override handling run with bash on hostile inputs: nothing executes, each override reaches DVC as
one argument, and DVC's own message refuses a malformed one."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import PROJECT_ROOT
from .pipeline_repo import create_project
from .test_workflows import actionlint

WORKFLOW_FILE = PROJECT_ROOT / ".github/workflows/experiment.yml"
WORKFLOW = yaml.safe_load(WORKFLOW_FILE.read_text())
JOBS = WORKFLOW["jobs"]


def step(job: str, name: str) -> dict:
    return next(s for s in JOBS[job]["steps"] if s.get("name") == name)


def run_step(job: str, name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A step's script as Actions runs it (bash -e -o pipefail), with its env."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step(job, name)["run"]],
                          cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def read_overrides(overrides: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str] | None]:
    """Run "Read the overrides"; the arguments it hands to dvc (None: it wrote none)."""
    (tmp_path / "runner").mkdir(exist_ok=True)
    args_file = tmp_path / "runner/dvc-args"
    args_file.unlink(missing_ok=True)
    result = run_step("experiment", "Read the overrides", PROJECT_ROOT,
                      {"OVERRIDES": overrides, "RUNNER_TEMP": str(tmp_path / "runner")})
    if not args_file.exists():
        return result, None
    return result, args_file.read_bytes().decode().split("\0")[:-1]


def test_actionlint_passes_with_shellcheck():
    if not shutil.which("shellcheck"):
        if os.environ.get("CI"):
            pytest.fail("shellcheck is missing: actionlint would not check the run scripts")
        pytest.skip("shellcheck not installed (Debian: shellcheck): actionlint skips the scripts")
    result = actionlint(WORKFLOW_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_runs_inside_actionlint(tmp_path):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (Debian: shellcheck)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: rm -rf $DIR/*\n")
    assert "SC2086" in actionlint(bad).stdout


def test_dispatched_with_typed_inputs():
    inputs = WORKFLOW[True]["workflow_dispatch"]["inputs"]  # PyYAML reads the key `on` as True
    assert inputs["overrides"]["required"] and inputs["overrides"]["type"] == "string"
    assert inputs["branch"]["type"] == "string" and not inputs["branch"]["required"]
    assert inputs["open_pr"] == {**inputs["open_pr"], "type": "boolean", "default": False}


def test_only_the_pull_request_job_may_write():
    assert WORKFLOW["permissions"] == {"contents": "read"}
    assert "permissions" not in JOBS["experiment"]
    assert JOBS["pull-request"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert JOBS["pull-request"]["if"] == "inputs.open_pr" and JOBS["pull-request"]["needs"] == "experiment"
    assert all(job["timeout-minutes"] <= 60 for job in JOBS.values())
    assert WORKFLOW["concurrency"]["cancel-in-progress"] is False  # never drop a queued experiment


def test_inputs_reach_scripts_only_through_env():
    for job in JOBS.values():
        for s in job["steps"]:
            assert "${{" not in s.get("run", ""), s.get("name")
    text = WORKFLOW_FILE.read_text()
    assert "inputs.overrides" in text and "inputs.branch" in text
    for s in (s for job in JOBS.values() for s in job["steps"]):
        for value in s.get("env", {}).values():
            assert not isinstance(value, str) or "inputs." not in value or value.strip().startswith("${{")


def test_the_experiment_job_reuses_the_setup_and_the_dvc_cache():
    steps = JOBS["experiment"]["steps"]
    order = [s.get("uses") or s.get("name") for s in steps]
    assert order.index("./.github/actions/setup") < order.index("./.github/actions/dvc-cache") \
        < order.index("Run the experiment") < order.index("Report against the base branch")
    assert steps[0]["with"]["fetch-depth"] == 0
    report = step("experiment", "Report against the base branch")["run"]
    assert 'report --base "origin/$BASE"' in report and "GITHUB_STEP_SUMMARY" in report
    branch = step("experiment", "Turn the experiment into a branch")
    assert 'dvc exp branch "$EXP_NAME" "$BRANCH"' in branch["run"] and branch["if"] == "inputs.open_pr"
    assert "gh pr create" in step("pull-request", "Push the branch and open the pull request")["run"]


@pytest.mark.parametrize(("overrides", "expected"), [
    ("train.families.logreg.C=[0.5,1,2]", ["train.families.logreg.C=[0.5,1,2]"]),
    ("a.b=1 c.d=[1,2]\n\n  e=x  ", ["a.b=1", "c.d=[1,2]", "e=x"]),
    ("'train.families.logreg.C=[0.5, 1, 2]'", ["train.families.logreg.C=[0.5, 1, 2]"]),
    ("-S a=1 --set-param b=2", ["a=1", "b=2"]),
    ("'a=$(id)' \"b=`id`\"", ["a=$(id)", "b=`id`"]),
])
def test_each_override_is_one_argument(overrides, expected, tmp_path):
    result, args = read_overrides(overrides, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert args == [arg for value in expected for arg in ("-S", value)]


@pytest.mark.parametrize("attack", [
    "a=1; touch {pwned}", "a=$(touch {pwned})", "a=`touch {pwned}`", "a=1 && touch {pwned}",
    "a=1 | touch {pwned}", "\"a=1\" ; touch {pwned} #", "a=1'\"; touch {pwned}; echo \"'",
])
def test_nothing_in_the_overrides_is_executed(attack, tmp_path):
    pwned = tmp_path / "pwned"
    result, args = read_overrides(attack.format(pwned=pwned), tmp_path)
    assert not pwned.exists()
    # whatever the words, each went to dvc as the value of a -S (DVC then refuses it)
    assert result.returncode != 0 or (args and args[::2] == ["-S"] * (len(args) // 2))


@pytest.mark.parametrize(("overrides", "message"), [
    ("a=1 --force", "'--force' is not an override"),
    ("-rf", "'-rf' is not an override"),
    ("", "no overrides given"),
    ("   \n ", "no overrides given"),
    ("'a=1", "cannot split the overrides"),
])
def test_refused_before_dvc_with_a_clear_message(overrides, message, tmp_path):
    result, args = read_overrides(overrides, tmp_path)
    assert result.returncode != 0 and args is None
    assert "::error title=Overrides::" in result.stdout and message in result.stdout


def _stub_dvc(root: Path) -> Path:
    """A .venv/bin/dvc that records its arguments, NUL-separated."""
    (root / ".venv/bin").mkdir(parents=True)
    dvc = root / ".venv/bin/dvc"
    dvc.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {root}/called\n")
    dvc.chmod(dvc.stat().st_mode | stat.S_IXUSR)
    return root / "called"


def test_the_experiment_gets_exactly_the_parsed_arguments(tmp_path):
    attack = f"'x.y=[1, 2]' 'a=$(touch {tmp_path}/pwned)' b=\"1 2\""
    _, args = read_overrides(attack, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    called = _stub_dvc(work)
    result = run_step("experiment", "Run the experiment", work,
                      {"RUNNER_TEMP": str(tmp_path / "runner"), "EXP_NAME": "ci-7"})
    assert result.returncode == 0, result.stderr
    assert called.read_bytes().decode().split("\0")[:-1] == [
        "exp", "run", "--name", "ci-7", "-S", "x.y=[1, 2]", "-S", f"a=$(touch {tmp_path}/pwned)", "-S", "b=1 2"]
    assert args is not None and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("branch", "ok"), [
    ("", True), ("exp/logreg-c", True), ("-f", False), ("a..b", False), ("x y", False),
    ("main;rm", False), ("$(id)", False), ("a\nb", False), ("exp/x.lock", False), ("exp/1.2_a", True),
])
def test_the_branch_name_is_checked_by_git(branch, ok, tmp_path):
    output = tmp_path / "output"
    result = run_step("experiment", "Name the branch", tmp_path,
                      {"BRANCH": branch, "RUN_ID": "42", "GITHUB_OUTPUT": str(output)})
    assert (result.returncode == 0) == ok, result.stdout
    if ok:
        assert output.read_text() == f"branch={branch or 'exp/run-42'}\n"


@pytest.mark.e2e
def test_dvc_refuses_a_malformed_override_with_its_own_message(tmp_path):
    """The real DVC in a throw-away project: a malformed override fails before any stage runs,
    with DVC's parse error, and shell syntax in it stays text."""
    repo = create_project(tmp_path / "project")
    (repo.root / ".venv").symlink_to(Path(sys.executable).parent.parent)
    for overrides, message in (("bad", "Error parsing override 'bad'\nmissing EQUAL"),
                               ("train.families.logreg.C=[0.5,1", "no viable alternative at input '[0.5,1'"),
                               ("nope.x=1", "Key 'nope' is not in struct"),
                               (f"'a=$(touch {tmp_path}/pwned)'", "mismatched input '('")):
        _, args = read_overrides(overrides, tmp_path)
        assert args is not None
        result = run_step("experiment", "Run the experiment", repo.root,
                          {"RUNNER_TEMP": str(tmp_path / "runner"), "EXP_NAME": "ci-1", **repo.env})
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert not (tmp_path / "pwned").exists() and not (repo.root / "data/raw").exists()
