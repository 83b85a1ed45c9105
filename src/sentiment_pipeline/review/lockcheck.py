"""Is the committed ``dvc.lock`` (and metrics/plots) what the code produces?

CI runs the pipeline on a clean clone and compares in two tiers:

* **exactly**: every stage's command and params, the hashes of its code and data (the source
  files, ``data/raw``, ``data/processed``, ...) and which outputs it declares. A difference
  here is a stale lock: code, params or data changed without ``dvc repro``.
* **to a tolerance** (tolerance.py): what is computed from floating-point maths, i.e. the
  features, the models and the files reviewers read under ``metrics/`` and ``plots/``. Their
  hashes in the lock are not compared; the files are, value by value, and each value that is
  off is named with both numbers.

The grid searches' measured seconds (``metrics/timing/``) are neither in the lock nor in git,
so an unchanged re-run leaves both as they were.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.review.tolerance import ABS_TOLERANCE, Difference, compare_files

TRACKED = ("metrics", "plots")
# Outputs computed with floating-point maths: compared through the tolerance, not by hash.
COMPUTED = (paths.FEATURES_DIR.as_posix(), "models", paths.METRICS_DIR.as_posix(),
            paths.PLOTS_DIR.as_posix())
MAX_LISTED = 20


class StaleLockError(PipelineError):
    """The committed results differ from what the pipeline produced."""


def is_computed(path: str) -> bool:
    return any(path == root or path.startswith(root + "/") for root in COMPUTED)


def _entry_view(entry: dict) -> dict:
    """A deps/outs entry as compared exactly: computed outputs by their path alone."""
    return {"path": entry["path"]} if is_computed(entry["path"]) else entry


def exact_view(lock: dict) -> dict:
    """``dvc.lock`` as it must match across machines: computed outputs reduced to their paths
    (in a stage's deps as in the outs of the stage producing them)."""
    view = {}
    for name, stage in (lock or {}).get("stages", {}).items():
        view[name] = {**stage, **{key: [_entry_view(entry) for entry in stage.get(key, [])]
                                  for key in ("deps", "outs") if key in stage}}
    return view


def _entries(stage: dict, key: str) -> dict[str, dict]:
    return {entry["path"]: entry for entry in stage.get(key, [])}


def stage_differences(committed: dict, produced: dict) -> dict[str, list[str]]:
    """Per stage, what differs exactly: its command, a params section, a dep or an out."""
    before, after = exact_view(committed), exact_view(produced)
    found: dict[str, list[str]] = {}
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None or new is None:
            found[name] = ["only in the " + ("produced" if old is None else "committed") + " lock"]
            continue
        what = []
        if old.get("cmd") != new.get("cmd"):
            what.append("cmd")
        old_params = {k: v for file in (old.get("params") or {}).values() for k, v in file.items()}
        new_params = {k: v for file in (new.get("params") or {}).values() for k, v in file.items()}
        what += [f"params {key}" for key in sorted(old_params.keys() | new_params.keys())
                 if old_params.get(key) != new_params.get(key)]
        for key in ("deps", "outs"):
            old_entries, new_entries = _entries(old, key), _entries(new, key)
            what += [f"{key[:-1]} {path}" for path in sorted(old_entries.keys() | new_entries.keys())
                     if old_entries.get(path) != new_entries.get(path)]
        found[name] = what or ["other fields"]
    return found


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def _git_lines(root: Path, *args: str) -> set[str]:
    listed = _git(root, *args)
    if listed.returncode != 0:
        raise StaleLockError(f"'git {' '.join(args)}' failed: {listed.stderr.strip()}")
    return {name for name in listed.stdout.split("\0") if name}


def result_files(root: Path, rev: str) -> tuple[set[str], set[str]]:
    """The result files under metrics/ and plots/: at ``rev``, and in the workspace (tracked or
    new, not ignored: the measured seconds under metrics/timing/ are ignored)."""
    committed = _git_lines(root, "ls-tree", "-r", "-z", "--name-only", rev, "--", *TRACKED)
    present = _git_lines(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                         "--", *TRACKED)
    present = {name for name in present if (root / name).is_file()}
    return committed, present


def result_differences(root: Path, rev: str, tolerance: float = ABS_TOLERANCE) -> list[Difference]:
    committed, present = result_files(root, rev)
    differences = [Difference(name, "", "absent", "present") for name in sorted(present - committed)]
    differences += [Difference(name, "", "present", "absent") for name in sorted(committed - present)]
    for name in sorted(committed & present):
        shown = _git(root, "show", f"{rev}:{name}")
        if shown.returncode != 0:
            raise StaleLockError(f"'git show {rev}:{name}' failed: {shown.stderr.strip()}")
        differences += compare_files(name, shown.stdout, (root / name).read_text(encoding="utf-8"),
                                     tolerance)
    return differences


def check(root: Path, rev: str = "HEAD", tolerance: float = ABS_TOLERANCE) -> str:
    """Raise :class:`StaleLockError` naming what differs between ``rev`` and the workspace;
    else return one line saying what was compared."""
    shown = _git(root, "show", f"{rev}:./dvc.lock")
    if shown.returncode != 0:
        raise StaleLockError(f"no dvc.lock at {rev}: {shown.stderr.strip()}")
    produced = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    problems = []
    stages = stage_differences(yaml.safe_load(shown.stdout), produced)
    if stages:
        listed = "; ".join(f"{name} ({', '.join(what)})" for name, what in stages.items())
        problems.append(f"dvc.lock differs exactly (code, params or data changed) for {listed}")
    differences = result_differences(root, rev, tolerance)
    if differences:
        shown_differences = "\n  ".join(str(d) for d in differences[:MAX_LISTED])
        more = len(differences) - MAX_LISTED
        problems.append(
            f"{len(differences)} result value(s) differ from {rev} beyond the tolerance "
            f"{tolerance:g}:\n  {shown_differences}" + (f"\n  ... and {more} more" if more > 0 else ""))
    if problems:
        raise StaleLockError("\n".join(problems) + "\nRun 'make repro' and commit dvc.lock, "
                             "metrics/ and plots/")
    compared = len(result_files(root, rev)[0])
    return (f"dvc.lock matches {rev} ({len(produced.get('stages', {}))} stages) and {compared} result files "
            f"under metrics/ and plots/ match within {tolerance:g}")
