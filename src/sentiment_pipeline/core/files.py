"""Atomic file output: a failed or interrupted stage never leaves a partial file behind."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    Works for files and directories. The temporary sibling lives on the same file system,
    so the final ``os.replace`` is atomic; on error the temporary is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_directory(prefix: str, parent: Path | str) -> Iterator[str]:
    """A temporary directory under ``parent``, removed on leaving whatever happened inside; one
    that cannot be removed (a worker still writing into it) is a warning naming it, never an
    error that would hide the one being raised."""
    directory = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if os.path.exists(directory):
            logging.getLogger(__name__).warning("could not remove the scratch directory %s: delete it", directory)


def write_json(data: Any, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# Quoting every string keeps stray carriage returns inside tweets from splitting rows. The
# streamed stages write their files in chunks with the same options, byte for byte.
CSV_OPTIONS = dict(index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)


def write_csv(frame: pd.DataFrame, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, **CSV_OPTIONS)


def read_csv(path: Path | str) -> pd.DataFrame:
    """Read a CSV this package wrote, keeping every field a string (no NaN for empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def iter_csv(path: Path | str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """:func:`read_csv` in chunks of ``chunk_rows`` rows."""
    with pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=chunk_rows) as reader:
        yield from reader


def write_joblib(obj: Any, target: Path | str) -> None:
    # Uncompressed: zlib doubled the time to write the final model (0.43 -> 0.70 s) and added
    # 45% to every load (the served model's included) for a third fewer bytes.
    with atomic_path(target) as tmp:
        joblib.dump(obj, tmp, compress=0)


def file_md5(path: Path | str) -> str:
    digest = hashlib.md5()  # noqa: S324 - content fingerprint, same hash DVC uses
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_timing(timing: dict, target: Path | str, summary: Path | str) -> None:
    """Measured seconds (untracked: see paths.TIMING_DIR) with the md5 of the summary the same
    run wrote: the PR report shows them only beside that summary, never stale seconds of an
    earlier run after DVC restored the stage's outputs from its cache."""
    write_json({**timing, "summary_md5": file_md5(summary)}, target)


# numpy's savez (and so scipy's save_npz) opens every member with force_zip64=True, since it
# streams a member without knowing its size; the ZIP64 headers zipfile then writes differ between
# CPython 3.11.2 and 3.11.7, so the same features were other bytes, and another dvc.lock, on
# Debian's Python than on a newer 3.11. Here a member's size is known: ZIP64 only for one that may
# need it (zipfile's limit is 2 GiB less 5 %), and the bytes are the same on every 3.11.
ZIP64_MEMBER_BYTES = 1 << 30


def npz_member(archive: zipfile.ZipFile, name: str, nbytes: int):
    """``archive``'s member ``<name>.npy`` opened for writing ``nbytes`` of array data."""
    return archive.open(f"{name}.npy", "w", force_zip64=nbytes > ZIP64_MEMBER_BYTES)


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``numpy.savez`` (members stored, not deflated) with ZIP64 only where needed (see above)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            with npz_member(archive, name, array.nbytes) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
