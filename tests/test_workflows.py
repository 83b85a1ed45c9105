import os
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


# ------------------------------------------------------------------ monitor.yml: retrain on drift
MONITOR = PROJECT_ROOT / ".github/workflows/monitor.yml"
RETRAIN_SCRIPT = PROJECT_ROOT / "scripts/retrain_on_feedback.sh"


def run_step(step: dict, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A workflow step's `run` as GitHub runs it (bash -e -o pipefail), with its env and
    GITHUB_OUTPUT; `${{ }}` expressions must not be in it (they go through env)."""
    assert "${{" not in step["run"], "an expression inside run: a script injection risk; pass it through env"
    output = cwd / "github_output"
    output.write_text("")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env})


def stub(directory: Path, name: str, body: str) -> Path:
    """An executable standing in for a tool: it records its arguments in calls.log, then runs body."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    # one line per call: newlines in the arguments (a pull request's body) as spaces
    tool.write_text(f'#!/usr/bin/env bash\nargs="$*"\necho "{name} ${{args//$\'\\n\'/ }}" >> "{directory.parent}/calls.log"\n'
                    f'{body}\n')
    tool.chmod(0o755)
    return tool


def test_the_monitor_job_hands_its_exit_code_to_the_retrain_job(tmp_path):
    workflow = yaml.safe_load(MONITOR.read_text())
    job = workflow["jobs"]["monitor"]
    step = next(s for s in job["steps"] if s.get("id") == "monitor")
    assert job["outputs"]["exit-code"] == "${{ steps.monitor.outputs.exit-code }}"
    assert step["env"]["SENTIMENT_MONITOR_WEBHOOK_URL"] == "${{ secrets.MONITOR_WEBHOOK_URL }}"
    for code in (0, 1, 2):
        stub(tmp_path / ".venv/bin", "sentiment-pipeline", f'[ -z "${{SENTIMENT_MONITOR_WEBHOOK_URL+set}}" ]; exit {code}')
        done = run_step(step, tmp_path, {"SENTIMENT_SERVE_DATABASE_URL": "postgresql://log", "LAST": "50",
                                         "SENTIMENT_MONITOR_WEBHOOK_URL": ""})
        assert done.returncode == code, done.stderr  # drift still fails the job: the alert
        assert (tmp_path / "github_output").read_text() == f"exit-code={code}\n"
    calls = (tmp_path / ".venv/calls.log").read_text().splitlines()
    assert calls[-1] == "sentiment-pipeline monitor --output-dir monitor-report --last 50"
    done = run_step(step, tmp_path, {"SENTIMENT_SERVE_DATABASE_URL": ""})
    assert done.returncode == 2 and "PREDICTION_LOG_URL" in done.stdout
    assert (tmp_path / "github_output").read_text() == "exit-code=2\n"


def test_retraining_runs_on_drift_only_when_asked_with_least_privilege():
    workflow = yaml.safe_load(MONITOR.read_text())
    retrain_input = workflow[True]["workflow_dispatch"]["inputs"]["retrain"]
    assert retrain_input["type"] == "boolean" and retrain_input["default"] is False  # never by default
    job = workflow["jobs"]["retrain"]
    assert job["needs"] == "monitor"
    condition = " ".join(job["if"].split())
    assert condition == ("always() && needs.monitor.outputs.exit-code == '1' && (inputs.retrain || "
                         "(github.event_name == 'schedule' && vars.RETRAIN_ON_DRIFT == 'true'))")
    assert job["permissions"] == {"contents": "read"} and workflow["permissions"] == {"contents": "read"}
    steps = job["steps"]
    checkout = steps[0]
    assert checkout["uses"].startswith("actions/checkout") and checkout["with"] == {
        "fetch-depth": 0, "persist-credentials": False}
    runs = [s.get("run", "") for s in steps]
    export = next(i for i, r in enumerate(runs) if "export-feedback data/external/feedback.csv" in r)
    retrain = next(i for i, r in enumerate(runs) if "scripts/retrain_on_feedback.sh" in r)
    assert export < retrain
    assert steps[retrain]["env"]["GH_TOKEN"] == "${{ secrets.RETRAIN_PR_TOKEN }}"
    for step in (s for s in workflow["jobs"]["monitor"]["steps"] + steps if "run" in s):
        assert "${{" not in step["run"], step["run"]


def test_the_retrain_step_fails_loudly_without_its_token(tmp_path):
    steps = yaml.safe_load(MONITOR.read_text())["jobs"]["retrain"]["steps"]
    step = next(s for s in steps if "retrain_on_feedback.sh" in s.get("run", ""))
    done = run_step(step, tmp_path, {"GH_TOKEN": ""})
    assert done.returncode == 1 and "::error::set the repository secret RETRAIN_PR_TOKEN" in done.stdout


@pytest.fixture()
def retrain_checkout(tmp_path) -> Path:
    """A project root for the script: today's params.yaml, an exported feedback CSV, and
    stand-ins for dvc, git and gh that record how they were called."""
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/feedback.csv").write_text("text,label\nlost my bag,negative\ngreat crew,positive\n")
    for tool in ("dvc", "git", "gh"):
        stub(tmp_path / "bin", tool, "exit 0")
    return tmp_path


def run_retrain(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RETRAIN_SCRIPT)], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "PYTHON": sys.executable,
                               "DVC": str(root / "bin/dvc"), "BASE": "main", "RUN_URL": "https://example/run/1"})


def test_the_retrain_script_adds_the_feedback_source_runs_the_experiment_and_opens_a_pr(retrain_checkout):
    from sentiment_pipeline.core.config import load_params

    before = (retrain_checkout / "params.yaml").read_text()
    done = run_retrain(retrain_checkout)
    assert done.returncode == 0, done.stderr
    after = (retrain_checkout / "params.yaml").read_text()
    download = load_params(retrain_checkout / "params.yaml").download
    assert download.sources == [{"name": "feedback", "source": "file", "path": "data/external/feedback.csv",
                                 "format": "csv"}, {"name": "original"}]
    assert [name for name, _ in download.source_configs()] == ["feedback", "original"]  # feedback wins
    # only download.sources changed: every comment and every other line kept
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert all("sources" in line or "feedback" in line or line.strip().startswith(("- ", "source:", "path:", "format:"))
               for line in changed), changed
    assert [line for line in before.splitlines() if line not in after.splitlines()] == ["  sources: null"]
    calls = (retrain_checkout / "calls.log").read_text().splitlines()
    tools = [c.split()[0] + " " + c.split()[1] for c in calls]
    # no DVC remote (the stub names none): the feedback is committed to the branch
    assert tools == ["dvc exp", "dvc exp", "git switch", "dvc remote", "git add", "git commit", "git push", "gh pr"]
    experiment = calls[0].split("--name ")[1]
    branch = "retrain/" + experiment.removeprefix("retrain-")
    assert calls[1] == f"dvc exp branch {experiment} {branch}"
    assert calls[4] == "git add --force -- data/external/feedback.csv"
    assert calls[6] == f"git push --set-upstream origin {branch}"
    assert calls[7].startswith(f"gh pr create --base main --head {branch} --title Retrain on production feedback")
    assert "(https://example/run/1)" in calls[7] and "2 exported feedback label(s)" in calls[7]
    assert "2 feedback row(s)" in done.stdout


def test_with_a_dvc_remote_the_feedback_goes_to_the_remote_not_to_git(retrain_checkout):
    """Production texts stay out of git when the project has a DVC remote (docs/sharing.md)."""
    stub(retrain_checkout / "bin", "dvc", '[ "$1 $2" = "remote default" ] && echo storage; exit 0')
    done = run_retrain(retrain_checkout)
    assert done.returncode == 0, done.stderr
    calls = (retrain_checkout / "calls.log").read_text().splitlines()
    assert "dvc add --quiet data/external/feedback.csv" in calls
    assert "dvc push --remote storage -- data/external/feedback.csv.dvc" in calls
    git_add = next(c for c in calls if c.startswith("git add"))
    assert git_add == "git add -- data/external/feedback.csv.dvc data/external/.gitignore"  # the pointer, not the texts
    assert "not in git" in next(c for c in calls if c.startswith("gh pr create"))


@pytest.mark.parametrize("case", ["no sources key", "empty feedback", "feedback already a source"])
def test_the_retrain_script_stops_before_running_anything(retrain_checkout, case):
    params = retrain_checkout / "params.yaml"
    if case == "no sources key":
        params.write_text(params.read_text().replace("  sources: null\n", ""))
        says = "params.yaml: download.sources is missing"
    elif case == "empty feedback":
        (retrain_checkout / "data/external/feedback.csv").write_text("text,label\n")
        says = "data/external/feedback.csv: no labelled rows"
    else:
        params.write_text(params.read_text().replace(
            "  sources: null\n", "  sources: [{name: fb, source: file, path: data/external/feedback.csv}, {name: o}]\n"))
        says = "params.yaml: download.sources already reads data/external/feedback.csv"
    before = params.read_text()
    done = run_retrain(retrain_checkout)
    assert done.returncode != 0 and f"error: {says}" in done.stderr, done.stderr
    assert params.read_text() == before and not (retrain_checkout / "calls.log").exists()
    assert not (retrain_checkout / "params.yaml.retrain").exists()
