"""One run of the real pipeline (``create_project`` then ``dvc repro``), made once and shared.

It is where many e2e tests start: conftest's ``served_project`` in every pytest process (the
xdist workers, and each of ``make test``'s three invocations), test_e2e, test_e2e_rerun,
test_report and test_dvc_cache. ~18 s on 2 cores each time it was made again. It is made once per content of
what it is made of: the package, dvc.yaml, .gitignore, the fixture, the small params,
pipeline_repo.py and this file, the interpreter, the installed distributions and the
environment variables the stages read. The first process builds it under a file lock into a
cache directory, the others wait and copy it; each caller gets its own copy, never the cached
project itself."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from . import pipeline_repo
from .conftest import FIXTURES, PROJECT_ROOT
from .pipeline_repo import Repo, create_project, small_params

CACHE_DIR_ENV = "SENTIMENT_TEST_CACHE_DIR"  # default: <tmp>/sentiment-pipeline-test-runs-<uid>
_UNUSED_DAYS = 2  # entries (other keys) unused this long are removed when a new one is built
_ENV_PREFIXES = ("SENTIMENT_", "NLTK_", "OMP_", "OPENBLAS_", "MKL_", "NPY_", "GLIBC_", "PYTHON", "DVC_",
                 "DASK_", "LC_", "LANG")


def _tree_files(src: Path) -> dict[str, bytes]:
    """The files under ``src`` (as create_project copies it: no __pycache__), by path from its parent."""
    return {path.relative_to(src.parent).as_posix(): path.read_bytes() for path in sorted(src.rglob("*"))
            if path.is_file() and "__pycache__" not in path.relative_to(src).parts}


def _live_inputs() -> dict[str, bytes]:
    """What create_project would write now, by path in the project."""
    return {**_tree_files(PROJECT_ROOT / "src"),
            "dvc.yaml": (PROJECT_ROOT / "dvc.yaml").read_bytes(),
            ".gitignore": (PROJECT_ROOT / ".gitignore").read_bytes(),
            "data/external/reviews.csv": (FIXTURES / "airline_sample.csv").read_bytes(),
            "params.yaml": yaml.safe_dump(small_params(), sort_keys=False).encode()}


def _project_inputs(root: Path) -> dict[str, bytes]:
    """What create_project wrote into ``root``, by path."""
    names = ("dvc.yaml", ".gitignore", "data/external/reviews.csv", "params.yaml")
    return {**_tree_files(root / "src"), **{name: (root / name).read_bytes() for name in names}}


@functools.cache
def _distributions() -> tuple[str, ...]:
    """The installed distributions (~0.3 s to list: once a process)."""
    from importlib.metadata import distributions

    return tuple(sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions()))


def _key(inputs: dict[str, bytes]) -> str:
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "little") + data)

    for name, data in sorted(inputs.items()):
        add(name, hashlib.sha256(data).digest())
    add(Path(pipeline_repo.__file__).read_bytes(), Path(__file__).read_bytes(), sys.version, sys.executable,
        platform.platform())
    # the package the stages import (`python -m sentiment_pipeline`): the checkout's src where it
    # is installed editable, as uv sync does; else the installed copy's files count too
    import sentiment_pipeline

    package = Path(sentiment_pipeline.__file__).resolve().parent
    add(str(package))
    if package != (PROJECT_ROOT / "src/sentiment_pipeline").resolve():
        for name, data in sorted(_tree_files(package).items()):
            add(name, hashlib.sha256(data).digest())
    add(*_distributions())
    add(*sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) and k != CACHE_DIR_ENV))
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_unused(cache: Path, keep: str) -> None:
    old = time.time() - _UNUSED_DAYS * 86400
    for entry in cache.iterdir():
        if not entry.name.startswith(keep) and entry.stat().st_mtime < old:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _build(into: Path) -> tuple[Path, str]:
    """create_project + dvc repro in ``into``/project; the repro's output in ``into``/repro.log."""
    repo = create_project(into / "project")
    log = repo.dvc("repro")
    (into / "repro.log").write_text(log)
    return into / "project", log


def pipeline_run(dest: Path) -> tuple[Repo, str]:
    """A copy at ``dest`` of a project as ``create_project(...)`` then ``dvc repro`` leave it
    (committed before the run, not after), and what that ``dvc repro`` printed.

    The run is made once per content of its inputs and shared through a cache directory: the
    first process builds it under a lock, the others wait and copy it. A run whose inputs changed
    while it was made (files edited meanwhile) is not cached: it is used by this caller only."""
    cache = Path(os.environ.get(CACHE_DIR_ENV) or Path(tempfile.gettempdir()) / f"sentiment-pipeline-test-runs-{os.getuid()}")
    cache.mkdir(parents=True, exist_ok=True)
    key = _key(_live_inputs())
    entry = cache / key
    if not entry.is_dir():
        with _locked(cache / f"{key}.lock"):
            if not entry.is_dir():
                staging = cache / f"{key}.building-{os.getpid()}"
                shutil.rmtree(staging, ignore_errors=True)
                try:
                    project, _ = _build(staging)
                    # the project holds what was hashed, and the package the stages imported (the
                    # installed one: the checkout's src) was not edited during the run
                    entry = staging  # unless cached below: this caller's only, removed once copied
                    if _key(_project_inputs(project)) == key == _key(_live_inputs()):
                        with contextlib.suppress(OSError):  # another process's (same content) won
                            staging.rename(cache / key)
                            entry = cache / key
                        _remove_unused(cache, keep=key)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
    try:
        os.utime(entry)  # in use: not removed as unused
        shutil.copytree(entry / "project", dest, symlinks=True, dirs_exist_ok=True)
        log = (entry / "repro.log").read_text()
    finally:
        if entry.name != key:
            shutil.rmtree(entry, ignore_errors=True)
    return Repo(dest), log


def committed_run(dest: Path) -> Repo:
    """:func:`pipeline_run`'s copy with the run's results committed: ``git status`` is clean."""
    repo, _ = pipeline_run(dest)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "first run")
    return repo
