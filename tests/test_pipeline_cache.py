"""tests/pipeline_cache.py: the shared pipeline run is keyed on what it is made of, built once per
key, copied to each caller, and never cached when its inputs changed while it was made."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from . import pipeline_cache
from .pipeline_repo import create_project


def test_the_key_is_what_create_project_writes(tmp_path):
    """The key of the checkout's inputs equals the key of a project create_project wrote from them
    (else no run would ever be cached), and any byte of the project's inputs changes it."""
    project = create_project(tmp_path / "project").root
    live = pipeline_cache._key(pipeline_cache._live_inputs())
    assert pipeline_cache._key(pipeline_cache._project_inputs(project)) == live
    for name in ("params.yaml", "dvc.yaml", "data/external/reviews.csv", "src/sentiment_pipeline/__init__.py"):
        original = (project / name).read_bytes()
        (project / name).write_bytes(original + b"\n")
        assert pipeline_cache._key(pipeline_cache._project_inputs(project)) != live, name
        (project / name).write_bytes(original)
    assert pipeline_cache._key(pipeline_cache._project_inputs(project)) == live


class FakeBuild:
    """Stands in for create_project + dvc repro: writes a project holding ``inputs`` and counts
    its builds (in a file: builds may happen in other processes)."""

    def __init__(self, counter: Path, inputs: dict[str, bytes]):
        self.counter, self.inputs = counter, inputs
        self.written: dict[Path, dict[str, bytes]] = {}  # what each project was made from
        self.edit: dict[str, bytes] | None = None
        self.undone = False  # the edit undone before the build ends
        self.seconds = 0.0

    def __call__(self, into: Path) -> tuple[Path, str]:
        with open(self.counter, "a") as count:
            count.write("build\n")
        time.sleep(self.seconds)
        before = dict(self.inputs)
        if self.edit is not None and self.undone:  # edited before create_project copied it...
            self.inputs.update(self.edit)
        project = into / "project"
        project.mkdir(parents=True)
        (project / "made-from").write_bytes(repr(sorted(self.inputs.items())).encode())
        self.written[project] = dict(self.inputs)
        if self.edit is not None:
            if self.undone:  # ... and undone while the stages ran
                self.inputs.clear()
                self.inputs.update(before)
            else:  # a file of the checkout edited while the stages ran (they import it)
                self.inputs.update(self.edit)
        (into / "repro.log").write_text("Running stage 'train':\n")
        return project, "Running stage 'train':\n"

    def builds(self) -> int:
        return len(self.counter.read_text().splitlines()) if self.counter.exists() else 0


@pytest.fixture()
def fake(tmp_path, monkeypatch) -> FakeBuild:
    inputs = {"params.yaml": b"a: 1\n"}
    build = FakeBuild(tmp_path / "builds", inputs)
    monkeypatch.setenv(pipeline_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline_cache, "_build", build)
    monkeypatch.setattr(pipeline_cache, "_live_inputs", lambda: dict(build.inputs))
    monkeypatch.setattr(pipeline_cache, "_project_inputs", lambda root: build.written[root])
    return build


def test_one_build_per_key_and_a_copy_per_caller(fake, tmp_path):
    first, log = pipeline_cache.pipeline_run(tmp_path / "one")
    second, _ = pipeline_cache.pipeline_run(tmp_path / "two")
    assert fake.builds() == 1 and log == "Running stage 'train':\n"
    assert (first.root / "made-from").read_bytes() == (second.root / "made-from").read_bytes()
    (first.root / "made-from").write_text("a test's own change")  # callers get copies
    third, _ = pipeline_cache.pipeline_run(tmp_path / "three")
    assert (third.root / "made-from").read_bytes() == (second.root / "made-from").read_bytes()
    assert fake.builds() == 1

    fake.inputs["params.yaml"] = b"a: 2\n"  # new content: a new run, made from it
    changed, _ = pipeline_cache.pipeline_run(tmp_path / "four")
    assert fake.builds() == 2 and b"a: 2" in (changed.root / "made-from").read_bytes()


@pytest.mark.parametrize("undone", [False, True], ids=["edited during the run", "edited, then undone"])
def test_a_run_whose_inputs_changed_while_it_was_made_is_not_cached(fake, tmp_path, undone):
    fake.edit, fake.undone = {"src/sentiment_pipeline/train.py": b"edited"}, undone
    pipeline_cache.pipeline_run(tmp_path / "one")
    cache = tmp_path / "cache"
    assert not [p for p in cache.iterdir() if p.is_dir()]  # used by its caller, then removed
    fake.edit = None
    now = repr(sorted(fake.inputs.items())).encode()
    pipeline_cache.pipeline_run(tmp_path / "two")  # the checkout as it is now: built and cached
    three, _ = pipeline_cache.pipeline_run(tmp_path / "three")
    assert fake.builds() == 2 and len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert (three.root / "made-from").read_bytes() == now


def test_processes_asking_at_once_wait_for_one_build(fake, tmp_path):
    """Four processes (forked: the fake build and cache directory go with them) ask while the
    first one's build takes a second: one build, four copies."""
    fake.seconds = 1.0
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=pipeline_cache.pipeline_run, args=(tmp_path / f"p{i}",)) for i in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * 4
    assert fake.builds() == 1
    assert all((tmp_path / f"p{i}/made-from").is_file() for i in range(4))
