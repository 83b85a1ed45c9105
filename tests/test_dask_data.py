"""preprocess and featurize on a Dask cluster (backend: dask): the same files as the local
streaming path, one line when a worker or the scheduler is lost, nothing written then."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest
import typer
import yaml

from sentiment_pipeline.core.config import FeaturizeConfig, PreprocessConfig, load_params
from sentiment_pipeline.core.errors import ConfigError

from .conftest import PROJECT_ROOT

# The files the two stages write; all must be the same bytes whatever the backend.
OUTPUTS = ("data/processed/train.csv", "data/processed/test.csv", "metrics/data.json", "plots/class_distribution.json",
           "data/features/X_train.npz", "data/features/X_test.npz", "data/features/y_train.npy",
           "data/features/y_test.npy", "data/features/classes.json", "models/vectorizer/tfidf.joblib",
           "metrics/features.json")
BACKEND_KEYS = {"backend", "scheduler_address", "dask_workers"}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on this machine, shared by the module's tests."""
    distributed = pytest.importorskip("distributed")  # a dev dependency: present with `make test`
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def raw_project(tmp_path_factory):
    """data/raw/reviews.csv of 2,000 synthetic reviews with exact and case/mention duplicates."""
    from benchmarks.stream_bench import write_source

    from sentiment_pipeline.pipeline.data import stream_source

    root = tmp_path_factory.mktemp("raw")
    write_source(root / "source.csv", 2000, seed=3)
    params = load_params(_write_params(root, {"download": {"source": "file", "path": str(root / "source.csv"),
                                                           "chunk_rows": 1000}}))
    stream_source(params.download, params.train.cv_folds, root / "data/raw/reviews.csv")
    return root


def _write_params(project, params: dict):
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return project / "params.yaml"


def _project(raw_project, tmp_path, name: str, preprocess: dict, featurize: dict):
    project = tmp_path / name
    (project / "data/raw").mkdir(parents=True)
    shutil.copy(raw_project / "data/raw/reviews.csv", project / "data/raw/reviews.csv")
    _write_params(project, {"preprocess": preprocess, "featurize": featurize})
    return project


def _run(project, monkeypatch, *stages) -> dict[str, bytes]:
    """The stages' entry points in ``project``; every output's bytes."""
    from sentiment_pipeline.stages import featurize, preprocess

    monkeypatch.chdir(project)
    for stage in stages or (preprocess, featurize):
        stage.run("params.yaml")
    return {name: (project / name).read_bytes() for name in OUTPUTS if (project / name).exists()}


# 400-row chunks: 5 of them, so the sliding window (2 tasks per worker thread) fills and slides
STREAMED = {"chunk_rows": 400, "n_jobs": 2}
DEFAULT_FEATURES = {**STREAMED, "char_ngrams": True, "char_ngram_range": [3, 5]}  # params.yaml's word + char_wb
HASHED = {**DEFAULT_FEATURES, "vectorizer": "hashing", "hashing_features": 4096}


@pytest.fixture(scope="module")
def local_outputs(raw_project, tmp_path_factory):
    """The local streaming path's files (n_jobs 2): preprocess, then featurize with TF-IDF and with
    hashed features."""
    from sentiment_pipeline.stages import featurize

    outputs = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        project = _project(raw_project, tmp_path_factory.mktemp("local"), "tfidf", STREAMED, DEFAULT_FEATURES)
        outputs["tfidf"] = _run(project, monkeypatch)
        _write_params(project, {"preprocess": STREAMED, "featurize": HASHED})
        outputs["hashing"] = _run(project, monkeypatch, featurize)
    assert len(outputs["tfidf"]) == len(OUTPUTS) and outputs["tfidf"] != outputs["hashing"]
    return outputs


@pytest.mark.e2e
def test_the_data_stages_write_the_same_files_on_a_dask_cluster(cluster, raw_project, local_outputs, tmp_path,
                                                               monkeypatch):
    """At a scheduler's address: chunks and results travel through the cluster's network."""
    on_dask = {"backend": "dask", "scheduler_address": cluster.scheduler_address}
    project = _project(raw_project, tmp_path, "dask", {**STREAMED, **on_dask}, {**DEFAULT_FEATURES, **on_dask})
    assert _run(project, monkeypatch) == local_outputs["tfidf"]


@pytest.mark.e2e
def test_without_an_address_the_stage_starts_its_own_local_cluster(raw_project, local_outputs, tmp_path, monkeypatch):
    """A LocalCluster of one worker, started and closed by the stage; its workers share this
    machine's disk, so the feature blocks come back as scratch files."""
    from sentiment_pipeline.stages import featurize

    monkeypatch.delenv("SENTIMENT_DASK_SCHEDULER", raising=False)
    on_dask = {"backend": "dask", "dask_workers": 1}
    project = _project(raw_project, tmp_path, "own", STREAMED, {**HASHED, **on_dask})
    (project / "data/processed").mkdir()
    for split in ("train", "test"):
        (project / f"data/processed/{split}.csv").write_bytes(local_outputs["hashing"][f"data/processed/{split}.csv"])
    found = _run(project, monkeypatch, featurize)
    assert found == {name: local_outputs["hashing"][name] for name in found} and len(found) == 9  # 7 written here


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch, capsys):
    from sentiment_pipeline import cli
    from sentiment_pipeline.pipeline import cluster as cluster_module
    from sentiment_pipeline.stages import preprocess

    pytest.importorskip("distributed")
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_SECONDS", 1)
    address = "tcp://127.0.0.1:9"  # the discard port: nothing listens
    project = tmp_path / "unreachable"
    (project / "data/raw").mkdir(parents=True)
    (project / "data/raw/reviews.csv").write_text("text,label\ngreat flight,positive\nlost my bag,negative\n")
    _write_params(project, {"preprocess": {**STREAMED, "backend": "dask", "scheduler_address": address}})
    monkeypatch.chdir(project)
    started = time.monotonic()
    with pytest.raises(typer.Exit) as stopped:
        cli._run(preprocess.run, params_file="params.yaml")
    assert stopped.value.exit_code == 1 and time.monotonic() - started < 15
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: preprocess.backend: dask could not reach a scheduler at {address} "
                      "(preprocess.scheduler_address / $SENTIMENT_DASK_SCHEDULER): Timed out trying to connect to "
                      f"{address} after 1 s"]
    assert not (project / "data/processed").exists()


@pytest.mark.e2e
def test_a_malformed_row_is_named_on_dask_too(cluster, raw_project, tmp_path, monkeypatch):
    from sentiment_pipeline.core.errors import DataError
    from sentiment_pipeline.stages import preprocess

    on_dask = {"backend": "dask", "scheduler_address": cluster.scheduler_address}
    project = _project(raw_project, tmp_path, "bad", {**STREAMED, **on_dask}, {})
    raw = project / "data/raw/reviews.csv"
    lines = raw.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1501] = lines[1501].rstrip("\n") + ",extra,fields\n"  # in the 4th chunk: 3 are in flight or done
    raw.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"data/raw/reviews.csv: not a well-formed CSV file: Expected 2 fields in "
                                        r"line 1502, saw 4$"):
        _run(project, monkeypatch, preprocess)
    assert not (project / "data/processed").exists() or not any((project / "data/processed").iterdir())


@pytest.mark.e2e
def test_a_worker_lost_mid_stage_stops_it_with_one_line_and_no_outputs(cluster, raw_project, tmp_path, monkeypatch,
                                                                     capsys):
    """A worker killed while it cleans a chunk. Dask would run the chunk again on another worker
    (distributed.scheduler.allowed-failures, 3 by default; the outputs are then the same); with 0
    allowed, as here, the stage stops: one line, nothing written. Last in the module: the nanny
    restarts the killed worker."""
    from distributed import Client

    from sentiment_pipeline import cli
    from sentiment_pipeline.stages import preprocess

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = client.run(os.getpid)
    scheduler = cluster.scheduler  # a LocalCluster's scheduler runs in this process
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            try:
                busy = [ts.processing_on.address for ts in list(scheduler.tasks.values())
                        if ts.state == "processing" and ts.processing_on is not None and "_clean_chunk" in str(ts.key)]
            except RuntimeError:  # the scheduler's thread changed its dict meanwhile: look again
                continue
            if busy:
                killed.append(pids[busy[0]])
                os.kill(pids[busy[0]], signal.SIGKILL)
            time.sleep(0.005)

    on_dask = {"backend": "dask", "scheduler_address": cluster.scheduler_address}
    project = _project(raw_project, tmp_path, "killed", {**STREAMED, **on_dask}, {})
    monkeypatch.chdir(project)
    monkeypatch.setattr(scheduler, "allowed_failures", 0)
    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    try:
        with pytest.raises(typer.Exit) as stopped:
            cli._run(preprocess.run, params_file="params.yaml")
    finally:
        killer.join()
    assert killed and stopped.value.exit_code == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "1 worker(s) of the Dask cluster at tcp://" in errors[0] and errors[0].endswith("nothing was written")
    assert errors[0].startswith("error: preprocess chunk ")
    assert not (project / "data/processed").exists() or not any((project / "data/processed").iterdir())
    assert not (project / "metrics").exists()
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)


def test_the_backend_keys_are_not_stage_params_and_every_other_key_is():
    """Where the chunks are processed does not change the files, so it must not invalidate
    dvc.lock; every other key of the two sections must (a key added later included)."""
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for section, config in (("preprocess", PreprocessConfig), ("featurize", FeaturizeConfig)):
        declared = set(stages[section]["params"])
        assert declared == {f"{section}.{key}" for key in config.model_fields if key not in BACKEND_KEYS}
        assert BACKEND_KEYS <= set(load_params(PROJECT_ROOT / "params.yaml").model_dump()[section])


@pytest.mark.parametrize("section", ["preprocess", "featurize"])
def test_dask_without_chunk_rows_is_refused_naming_the_key(tmp_path, section):
    (tmp_path / "params.yaml").write_text(f"{section}:\n  backend: dask\n")
    with pytest.raises(ConfigError, match=rf"{section}.backend: dask processes chunks on the cluster: set "
                                          rf"{section}.chunk_rows"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.e2e
def test_a_map_closed_early_on_a_local_cluster_waits_for_the_running_tasks(cluster, tmp_path):
    """A LocalCluster the stage started shares its scratch directory: closed early (featurize's
    error path), the map cancels what no worker runs and waits for what one does, so nothing
    writes into the directory after the close. Standard-library tasks: the workers import none
    of ours."""
    import operator
    import subprocess

    from distributed import Client

    from sentiment_pipeline.pipeline.cluster import DaskCluster
    from sentiment_pipeline.pipeline.streaming import parallel_map

    with Client(cluster.scheduler_address) as client:
        here = DaskCluster(client, cluster.scheduler_address, started_here=True, section="test")
        tasks = [(subprocess.check_call, ["sh", "-c", f"sleep 1; touch {tmp_path}/{i}"]) for i in range(12)]
        mapped = parallel_map(operator.call, tasks, 2, cluster=here)
        assert next(mapped) == 0
        mapped.close()
        done = sorted(int(p.name) for p in tmp_path.iterdir())
        time.sleep(2.5)
        assert sorted(int(p.name) for p in tmp_path.iterdir()) == done
        assert 1 <= len(done) < len(tasks)
