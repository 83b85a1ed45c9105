"""The served model, exactly as the pipeline wrote it: verified against ``dvc.lock`` before loading.

A joblib file is a pickle, and unpickling runs code, so nothing is loaded unless the directory's
hash equals the one ``dvc.lock`` (git-tracked, reviewed) records for the ``select`` stage's
``models/final`` output. The hash is DVC's own directory hash (md5 of the sorted JSON list of
``{md5, relpath}`` entries, suffixed ``.dir``), so a model DVC checked out or pulled verifies
without DVC being imported. skops' trusted-types loader was the alternative; it would need every
estimator class of every family (our own wrappers, XGBoost) listed as trusted, and would still not
prove that the file is the one ``evaluate`` measured, which the lock does.

The cleaning the model was trained behind comes from the same lock: the ``preprocess`` params
recorded for that run, not today's ``params.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from sentiment_pipeline.core import paths
from sentiment_pipeline.core.config import PreprocessConfig
from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.core.files import file_md5, read_json

LOCK_FILE = Path("dvc.lock")
SELECT_STAGE = "select"
PREPROCESS_STAGE = "preprocess"


class ModelIntegrityError(PipelineError):
    """The model directory is missing, or is not the one dvc.lock records."""


def dvc_dir_md5(directory: Path) -> str:
    """DVC's hash of a directory output (``<md5>.dir``), as written in ``dvc.lock``."""
    entries = sorted(
        ({"md5": file_md5(path), "relpath": path.relative_to(directory).as_posix()}
         for path in directory.rglob("*") if path.is_file()),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"  # noqa: S324


def _read_lock(lock_file: Path) -> dict:
    if not lock_file.is_file():
        raise ModelIntegrityError(f"{lock_file}: not found; the model is verified against it "
                                  "(run 'dvc repro' to write it)")
    try:
        return yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ModelIntegrityError(f"{lock_file}: not valid YAML: {exc}") from None


def _locked_output(lock: dict, lock_file: Path, stage: str, path: str) -> dict:
    for entry in lock.get("stages", {}).get(stage, {}).get("outs", []):
        if entry.get("path") == path:
            return entry
    raise ModelIntegrityError(f"{lock_file}: stage '{stage}' records no output '{path}'; "
                              "run 'dvc repro' to produce the model")


def _locked_preprocess(lock: dict, lock_file: Path) -> PreprocessConfig:
    params = lock.get("stages", {}).get(PREPROCESS_STAGE, {}).get("params", {})
    section = None
    for values in params.values():
        if "preprocess" in values:  # the whole section, as dvc.yaml listed it before issue 33
            section = values["preprocess"]
            break
        # its keys one by one (preprocess.cleaning, ...): dvc.yaml leaves out backend,
        # scheduler_address and dask_workers, which do not change the outputs
        keys = {key.removeprefix("preprocess."): value for key, value in values.items() if key.startswith("preprocess.")}
        if keys:
            section = keys
            break
    if section is None:
        raise ModelIntegrityError(f"{lock_file}: stage '{PREPROCESS_STAGE}' records no "
                                  "'preprocess' params; run 'dvc repro'")
    return PreprocessConfig.model_validate(section)


def _git_revision(root: Path) -> str | None:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass(frozen=True)
class VerifiedModel:
    """A model directory whose hash matched ``dvc.lock``, and what the lock says about its run."""

    model_file: Path
    card: dict
    lock_md5: str
    preprocess: PreprocessConfig
    git_revision: str | None

    @property
    def version(self) -> str:
        """Short and stable: the first 12 hex digits of the model directory's hash."""
        return self.lock_md5.removesuffix(".dir")[:12]


def verify_model(root: Path | str = ".", model_dir: Path | None = None,
                 lock_file: Path | None = None) -> VerifiedModel:
    """Check ``models/final`` against ``dvc.lock``; raise :class:`ModelIntegrityError` with one
    line (missing, stale or tampered) otherwise. Nothing is unpickled here."""
    root = Path(root)
    model_dir = root / (model_dir or paths.FINAL_DIR)
    lock_file = root / (lock_file or LOCK_FILE)
    model_file = model_dir / paths.FINAL_MODEL.name
    if not model_file.is_file():
        raise ModelIntegrityError(f"{os.path.relpath(model_file, root)}: not found; run 'dvc repro' "
                                  "(or 'dvc pull' / 'dvc checkout' where a cache holds it)")
    lock = _read_lock(lock_file)
    locked = _locked_output(lock, lock_file, SELECT_STAGE, paths.FINAL_DIR.as_posix())
    actual = dvc_dir_md5(model_dir)
    if actual != locked.get("md5"):
        raise ModelIntegrityError(
            f"{os.path.relpath(model_dir, root)}: hash {actual} does not match {locked.get('md5')} in "
            f"{lock_file.name}: the model was changed after the pipeline wrote it, or dvc.lock is "
            "from another run; refusing to load it. Run 'dvc checkout models/final' or 'dvc repro'")
    return VerifiedModel(model_file=model_file, card=read_json(model_dir / paths.MODEL_CARD.name),
                         lock_md5=actual, preprocess=_locked_preprocess(lock, lock_file),
                         git_revision=_git_revision(root))
