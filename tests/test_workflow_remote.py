"""The DVC remote's wiring in CI (docs/sharing.md): with the secret DVC_REMOTE_URL, pull requests
pull outputs and run-cache from the remote before the pipeline and main pushes after its lock
check; without it, the Actions cache path of before. The composite action's script runs here on
hostile secret values: they land in .dvc/config.local as data, never in the committed config,
never executed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import PROJECT_ROOT

NO_REMOTE = "env.HAS_DVC_REMOTE != 'true'"
REMOTE = "env.HAS_DVC_REMOTE == 'true'"
SECRETS = {"remote-url": "${{ secrets.DVC_REMOTE_URL }}", "remote-endpoint": "${{ secrets.DVC_REMOTE_ENDPOINT }}",
           "remote-access-key-id": "${{ secrets.DVC_REMOTE_ACCESS_KEY_ID }}",
           "remote-secret-access-key": "${{ secrets.DVC_REMOTE_SECRET_ACCESS_KEY }}"}


def load(path: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / path).read_text())


def _named(steps: list[dict], name: str) -> int:
    return next(i for i, s in enumerate(steps) if s.get("name") == name)


def test_the_cache_action_takes_the_remote_when_given_else_the_actions_cache():
    steps = load(".github/actions/dvc-cache/action.yml")["runs"]["steps"]
    restore = next(s for s in steps if s.get("uses", "").startswith("actions/cache/restore"))
    remote = next(s for s in steps if s.get("uses") == "./.github/actions/dvc-remote")
    assert restore["if"] == "inputs.remote-url == ''" and remote["if"] == "inputs.remote-url != ''"
    assert remote["with"]["mode"] == "pull"
    assert steps[-1]["run"].startswith(".venv/bin/dvc checkout") and "if" not in steps[-1]  # both paths


def test_pull_requests_pull_from_the_remote_and_save_no_actions_cache_when_there_is_one():
    job = load(".github/workflows/pr-report.yml")["jobs"]["report"]
    assert job["env"]["HAS_DVC_REMOTE"] == "${{ secrets.DVC_REMOTE_URL != '' }}"
    steps = job["steps"]
    cache = next(s for s in steps if s.get("uses") == "./.github/actions/dvc-cache")
    assert cache["with"] == SECRETS
    assert steps.index(cache) < _named(steps, "Run the pipeline")
    repro = steps[_named(steps, "Run the pipeline")]
    assert repro["env"]["REPRO_ARGS"] == "${{ env.HAS_DVC_REMOTE == 'true' && '--pull' || '' }}"
    assert 'make repro REPRO_ARGS="$REPRO_ARGS"' in repro["run"]
    for name in ("Keep only this run's outputs in the DVC cache", "Save the DVC cache for the next push to this pull request"):
        assert steps[_named(steps, name)]["if"] == NO_REMOTE


def test_main_pushes_to_the_remote_only_after_its_lock_check():
    job = load(".github/workflows/ci.yml")["jobs"]["lock-is-current"]
    assert job["env"]["HAS_DVC_REMOTE"] == "${{ secrets.DVC_REMOTE_URL != '' }}"
    steps = job["steps"]
    sources, push = [i for i, s in enumerate(steps) if s.get("uses") == "./.github/actions/dvc-remote"]
    # DVC-tracked inputs (a retraining branch's feedback) before the run, no stage output
    assert steps[sources]["if"] == REMOTE and steps[sources]["with"]["mode"] == "sources"
    assert sources < _named(steps, "Run the pipeline")
    assert steps[push]["if"] == REMOTE and steps[push]["with"]["mode"] == "push"
    assert {k: v for k, v in steps[push]["with"].items() if k != "mode"} == {
        k.removeprefix("remote-"): v for k, v in SECRETS.items()}
    assert _named(steps, "dvc.lock and metrics in the commit match the run") < push
    saved = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save"))
    assert saved["if"] == NO_REMOTE


def test_the_remote_action_gets_its_inputs_through_the_environment_only():
    action = load(".github/actions/dvc-remote/action.yml")
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step["name"]
    modes = {step.get("if"): step.get("run", "") for step in action["runs"]["steps"]}
    assert "dvc pull --run-cache" in modes["inputs.mode == 'pull'"]
    assert "dvc push --run-cache" in modes["inputs.mode == 'push'"]
    assert "'*.dvc'" in modes["inputs.mode == 'sources'"] and "--run-cache" not in modes["inputs.mode == 'sources'"]


def test_the_configure_script_keeps_hostile_secrets_as_data_in_the_local_config(tmp_path):
    """The script as the action runs it, on a throw-away DVC repo: every value reaches
    .dvc/config.local verbatim, the committed .dvc/config stays empty, nothing is executed."""
    script = load(".github/actions/dvc-remote/action.yml")["runs"]["steps"][0]["run"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    committed = (tmp_path / ".dvc/config").read_text()
    bin_dir = tmp_path / ".venv/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "dvc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dvc "$@"\n')
    (bin_dir / "sentiment-pipeline").write_text("#!/bin/sh\necho checked \"$@\"\n")  # the check, stubbed
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    pwned = tmp_path / "pwned"
    hostile = {"REMOTE_URL": "s3://team-bucket/dvc cache", "REMOTE_ENDPOINT": f"http://x/$(touch {pwned})",
               "REMOTE_KEY_ID": f"AKIA`touch {pwned}`", "REMOTE_SECRET": f"s3cr3t'; touch {pwned}; echo '"}
    result = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, **hostile}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "checked check-remote"
    assert not pwned.exists()
    assert (tmp_path / ".dvc/config").read_text() == committed  # nothing for git
    local = (tmp_path / ".dvc/config.local").read_text()
    for value in hostile.values():
        assert value in local or value.replace("'", "\\'") in local, (value, local)
    assert "remote = ci" in local
    ignored = subprocess.run(["git", "check-ignore", ".dvc/config.local"], cwd=tmp_path, capture_output=True)
    assert ignored.returncode == 0, "DVC's .dvc/.gitignore keeps config.local out of git"


def test_docs_name_the_secrets_the_workflows_read():
    text = (PROJECT_ROOT / "docs/sharing.md").read_text()
    for secret in ("DVC_REMOTE_URL", "DVC_REMOTE_ENDPOINT", "DVC_REMOTE_ACCESS_KEY_ID", "DVC_REMOTE_SECRET_ACCESS_KEY"):
        assert secret in text
    assert Path(PROJECT_ROOT / ".github/actions/dvc-remote/action.yml").is_file()
