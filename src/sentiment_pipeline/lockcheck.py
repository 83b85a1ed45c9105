"""Is the committed ``dvc.lock`` (and metrics/plots) what the code produces?

CI runs the pipeline on a clean clone and compares. Everything must match bit for bit except
the grid searches' measured seconds (``metrics/timing/``, ``plots/cv_fit_time.json``), which
are outputs like any other but differ on every run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from sentiment_pipeline import paths
from sentiment_pipeline.errors import PipelineError

MEASURED_DIRS = (paths.TIMING_DIR.as_posix() + "/",)
MEASURED_FILES = (paths.CV_FIT_TIME.as_posix(),)
TRACKED = ("metrics", "plots")


class StaleLockError(PipelineError):
    """The committed results differ from what the pipeline produced."""


def is_measured(path: str) -> bool:
    return path in MEASURED_FILES or path.startswith(MEASURED_DIRS)


def deterministic_view(lock: dict) -> dict:
    """``dvc.lock`` without the entries of measured outputs (as outs of one stage and deps of
    the next)."""
    view = {}
    for name, stage in (lock or {}).get("stages", {}).items():
        view[name] = {**stage, **{key: [entry for entry in stage.get(key, [])
                                        if not is_measured(entry["path"])]
                                  for key in ("deps", "outs") if key in stage}}
    return view


def stale_stages(committed: dict, produced: dict) -> list[str]:
    before, after = deterministic_view(committed), deterministic_view(produced)
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def check(root: Path, rev: str = "HEAD") -> None:
    """Raise :class:`StaleLockError` naming what differs between ``rev`` and the workspace."""
    shown = _git(root, "show", f"{rev}:./dvc.lock")
    if shown.returncode != 0:
        raise StaleLockError(f"no dvc.lock at {rev}: {shown.stderr.strip()}")
    produced = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    problems = []
    stages = stale_stages(yaml.safe_load(shown.stdout), produced)
    if stages:
        problems.append(f"dvc.lock differs for stage(s) {', '.join(stages)}")
    excluded = [f":(exclude){p.rstrip('/')}" for p in MEASURED_DIRS + MEASURED_FILES]
    changed = set()
    for args in (["diff", "--name-only", "-z", rev], ["ls-files", "-z", "--others", "--exclude-standard"]):
        listed = _git(root, *args, "--", *TRACKED, *excluded)
        if listed.returncode != 0:
            raise StaleLockError(f"'git {' '.join(args)}' failed: {listed.stderr.strip()}")
        changed |= {name for name in listed.stdout.split("\0") if name}
    changed = sorted(changed)
    if changed:
        problems.append(f"files differ from {rev}: {', '.join(changed)}")
    if problems:
        raise StaleLockError("; ".join(problems) + ". Run 'make repro' and commit dvc.lock, "
                             "metrics/ and plots/")
