import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github/workflows").glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ACTIONLINT, "-no-color", *map(str, files)], capture_output=True,
                          text=True, timeout=60)


def test_actionlint_is_installed():
    assert ACTIONLINT, "actionlint comes with the dev dependencies (uv.lock)"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow):
    result = actionlint(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: echo ${{ github.event.nope.bad.. }}\n")
    assert actionlint(bad).returncode != 0


def test_pr_report_workflow_has_least_privilege_and_full_history():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/pr-report.yml").read_text())
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = workflow["jobs"]["report"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "--edit-last --create-if-none" in runs and "GITHUB_STEP_SUMMARY" in runs
    assert "make repro" in runs


def test_ci_workflow_runs_the_readme_test_command():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/ci.yml").read_text())
    runs = [s.get("run", "") for s in workflow["jobs"]["tests"]["steps"]]
    assert "bash .ci/run" in runs  # which installs the test's Debian packages, then runs make test
    assert "make test" in (PROJECT_ROOT / "README.md").read_text()
    assert (PROJECT_ROOT / ".ci/run").read_text().rstrip().endswith("make test")


def test_pull_requests_restore_the_dvc_cache_that_main_saves():
    load = lambda path: yaml.safe_load((PROJECT_ROOT / path).read_text())  # noqa: E731
    restore = load(".github/actions/dvc-cache/action.yml")["runs"]["steps"][0]["with"]
    ci_steps = load(".github/workflows/ci.yml")["jobs"]["lock-is-current"]["steps"]
    saved = next(s["with"] for s in ci_steps if s.get("uses", "").startswith("actions/cache/save"))
    assert saved["path"] == restore["path"] == ".dvc/cache"
    assert saved["key"].startswith("dvc-${{ runner.os }}-${{ github.ref_name }}-")
    assert "dvc-${{ runner.os }}-main-" in restore["restore-keys"].splitlines()
    # the lock check itself recomputes everything: it restores no cache
    assert all(s.get("uses") != "./.github/actions/dvc-cache" for s in ci_steps)
    pr_steps = load(".github/workflows/pr-report.yml")["jobs"]["report"]["steps"]
    order = [s.get("uses") or s.get("name") for s in pr_steps]
    assert order.index("./.github/actions/dvc-cache") < order.index("Run the pipeline")


def test_monitor_workflow_runs_on_a_schedule_and_alerts_by_exit_code():
    workflow = yaml.safe_load((PROJECT_ROOT / ".github/workflows/monitor.yml").read_text())
    triggers = workflow[True]  # PyYAML reads the key `on` as True
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    steps = workflow["jobs"]["monitor"]["steps"]
    run = next(s for s in steps if "sentiment-pipeline monitor" in s.get("run", ""))
    assert run["env"]["SENTIMENT_SERVE_DATABASE_URL"] == "${{ secrets.PREDICTION_LOG_URL }}"
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s.get("if") == "always()" for s in steps)
