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
    # no production text in the artifact
    assert calls[-1] == "sentiment-pipeline monitor --output-dir monitor-report --example-texts 0 --last 50"
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


# A stand-in for dvc in a real git checkout: `exp run` changes what a run changes (dvc.lock,
# metrics), `exp branch` makes a branch of the workspace's tracked and staged state (what DVC's
# experiment commit holds), `add` writes a .dvc pointer and ignores the file, as DVC does.
FAKE_DVC = """
case "$1 $2" in
  "remote default") [ -n "${FAKE_REMOTE:-}" ] && echo "$FAKE_REMOTE"; exit 0 ;;
  "exp run") echo "  run: $4" >> dvc.lock; echo '{"f1": 0.8}' > metrics.json ;;
  "exp branch") git branch "$4" "$(git stash create)" ;;
  "add --quiet") echo "outs: [{path: $(basename "$3")}]" > "$3.dvc"; echo "/$(basename "$3")" >> "$(dirname "$3")/.gitignore" ;;
esac
"""


@pytest.fixture()
def retrain_checkout(tmp_path) -> Path:
    """A git checkout of a project for the script (today's params.yaml, a dvc.lock, an exported
    feedback CSV, an origin to push to), with stand-ins for dvc and gh that record their calls;
    git is the real one."""
    root = tmp_path / "project"
    (root / "data/external").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    (root / "metrics.json").write_text('{"f1": 0.7}\n')
    (root / "data/external/README.md").write_text("sources\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "project"],
                 ["remote", "add", "origin", str(tmp_path / "origin.git")], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    (root / "data/external/feedback.csv").write_text("text,label\nlost my bag,negative\ngreat crew,positive\n")
    stub(tmp_path / "bin", "dvc", FAKE_DVC)
    stub(tmp_path / "bin", "gh", "exit 0")
    return root


def run_retrain(root: Path, **env: str) -> subprocess.CompletedProcess:
    bin_dir = root.parent / "bin"
    return subprocess.run(["bash", str(RETRAIN_SCRIPT)], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable,
                               "DVC": str(bin_dir / "dvc"), "BASE": "main", "RUN_URL": "https://example/run/1",
                               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", **env})


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


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
    calls = (retrain_checkout.parent / "calls.log").read_text().splitlines()
    experiment = next(c for c in calls if c.startswith("dvc exp run")).split("--name ")[1]
    branch = "retrain/" + experiment.removeprefix("retrain-")
    assert f"dvc exp branch {experiment} {branch}" in calls
    # real git: the branch is checked out, clean, pushed, and holds the run, the params and the
    # feedback it was trained on (no DVC remote: the CSV itself)
    assert _git(retrain_checkout, "branch", "--show-current").strip() == branch
    assert _git(retrain_checkout, "status", "--porcelain", "--untracked-files=no") == ""
    assert _git(retrain_checkout, "rev-parse", branch) == _git(retrain_checkout, "rev-parse", f"origin/{branch}")
    assert f"run: {experiment}" in _git(retrain_checkout, "show", f"{branch}:dvc.lock")
    assert "name: feedback" in _git(retrain_checkout, "show", f"{branch}:params.yaml")
    assert "lost my bag" in _git(retrain_checkout, "show", f"{branch}:data/external/feedback.csv")
    assert _git(retrain_checkout, "show", "main:params.yaml") == before  # main untouched
    [pr] = [c for c in calls if c.startswith("gh pr create")]
    assert pr.startswith(f"gh pr create --base main --head {branch} --title Retrain on production feedback")
    assert "(https://example/run/1)" in pr and "2 exported feedback label(s)" in pr
    assert "2 feedback row(s)" in done.stdout


def test_with_a_dvc_remote_the_feedback_goes_to_the_remote_not_to_git(retrain_checkout):
    """Production texts stay out of git when the project has a DVC remote (docs/sharing.md); the
    pointer is in place before the run (data/external is the download stage's dependency)."""
    done = run_retrain(retrain_checkout, FAKE_REMOTE="storage")
    assert done.returncode == 0, done.stderr
    calls = (retrain_checkout.parent / "calls.log").read_text().splitlines()
    add = calls.index("dvc add --quiet data/external/feedback.csv")
    assert add < calls.index("dvc push --remote storage -- data/external/feedback.csv.dvc")
    assert add < next(i for i, c in enumerate(calls) if c.startswith("dvc exp run"))
    branch = _git(retrain_checkout, "branch", "--show-current").strip()
    files = _git(retrain_checkout, "ls-tree", "-r", "--name-only", branch).split()
    assert "data/external/feedback.csv.dvc" in files and "data/external/.gitignore" in files
    assert "data/external/feedback.csv" not in files  # the pointer, not the texts
    assert (retrain_checkout / "data/external/feedback.csv").is_file()  # still here, ignored
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
    assert params.read_text() == before and not (retrain_checkout.parent / "calls.log").exists()
    assert not (retrain_checkout / "params.yaml.retrain").exists()
