"""End to end, bit for bit: the pipeline forced to run again reproduces its own results, on this
machine's kernels and on a simulated older CPU (a file of its own: each re-run is a whole
pipeline run, so these run beside test_e2e.py's rather than after them)."""

from __future__ import annotations

import platform

import pytest

from .pipeline_cache import committed_run
from .pipeline_repo import FAMILIES, Repo
from .test_e2e import check_lock
from .test_kernels import OLDER_CPU

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return committed_run(tmp_path_factory.mktemp("project"))


def test_forced_rerun_leaves_git_clean(repo):
    """Same outputs, bit for bit, and the measured seconds nowhere git or dvc.lock sees them."""
    before, hashes_before = repo.metrics(), repo.output_hashes()
    repo.dvc("repro", "--force")
    assert repo.metrics() == before
    assert repo.output_hashes() == hashes_before
    assert repo.git("status", "--porcelain") == ""
    assert {p.stem for p in (repo.root / "metrics/timing").glob("*.json")} == {*FAMILIES, "ensemble"}
    passed = check_lock(repo)
    assert passed.returncode == 0 and len(passed.stdout.strip().splitlines()) == 1, passed
    assert passed.stdout.startswith("dvc.lock matches HEAD")


@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"}, reason="x86-64 kernels")
def test_a_simulated_older_cpu_reproduces_the_committed_results(repo):
    """NumPy without AVX2/AVX-512, OpenBLAS's Sandy Bridge kernels and glibc without FMA: the
    same metrics, plots, selected family and model (hence test predictions), bit for bit."""
    before, hashes_before = repo.metrics(), repo.output_hashes()
    saved_env = repo.env
    repo.env = {**saved_env, **OLDER_CPU}
    try:
        repo.dvc("repro", "--force")
        result = check_lock(repo)
    finally:
        repo.env = saved_env
    assert result.returncode == 0, result.stderr
    assert repo.metrics() == before
    assert repo.output_hashes() == hashes_before  # the models too, bit for bit
