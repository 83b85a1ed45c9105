"""Hot reload: the served model replaced while requests flow, none refused or failed, each
answered whole by one model and naming it; a model that fails verification is refused and the
old one keeps serving."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.inference.artifacts import ModelIntegrityError
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.serving import auth
from sentiment_pipeline.serving.app import create_app

from .test_log_durability import Load, _project, _serve, _wait_for
from .test_serving_api import free_port, wait_ready

TEXTS = ["lost my bag again", "great crew, thanks!", "when does boarding start?"]


def _renamed(predictor: Predictor, version: str) -> Predictor:
    """The same model under another version (what a new models/final looks like to clients)."""
    return Predictor(predictor.model, predictor.normalizer, predictor.classes,
                     {**predictor.metadata, "version": version})


def test_a_reload_swaps_the_model_between_requests_and_none_fails(small_predictor, tmp_path):
    versions = iter(["v-one", "v-two"])
    loaded: list[str] = []
    first: list[weakref.ref] = []

    def load() -> Predictor:
        predictor = _renamed(small_predictor, next(versions))
        loaded.append(predictor.version)
        first.append(weakref.ref(predictor))
        return predictor

    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}", rate_limit_per_second=None)
    with TestClient(create_app(settings, load, tmp_path)) as client:
        stop, answers = threading.Event(), []

        def traffic() -> None:
            while not stop.is_set():
                response = client.post("/v1/predict", json={"texts": TEXTS})
                answers.append((response.status_code, response.json()))

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(traffic)
            time.sleep(0.3)
            reloaded = client.post("/v1/admin/reload")
            time.sleep(0.3)
            stop.set()
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json() == {"status": "reloaded", "model_version": "v-two", "previous_version": "v-one"}
        assert client.get("/v1/model").json()["version"] == "v-two"
        # nothing holds the old model (a reload does not leak one), and the new one is frozen
        # out of the collector's generations (serving/reload.py refreeze)
        assert first[0]() is None and first[1]() is not None and gc.get_freeze_count() > 0
    assert loaded == ["v-one", "v-two"]
    assert {status for status, _ in answers} == {200}
    seen = [body["model_version"] for _, body in answers]
    assert seen[0] == "v-one" and seen[-1] == "v-two"
    for _, body in answers:  # each answer whole from one model
        assert {p["model_version"] for p in body["predictions"]} == {body["model_version"]}


def test_a_model_that_fails_verification_is_refused_and_the_old_one_serves(small_predictor, tmp_path):
    calls = {"n": 0}

    def load() -> Predictor:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ModelIntegrityError("models/final: hash 1234 does not match dvc.lock's 5678")
        return small_predictor

    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}")
    with TestClient(create_app(settings, load, tmp_path)) as client:
        refused = client.post("/v1/admin/reload")
        assert refused.status_code == 409, refused.text
        assert "does not match" in refused.json()["details"][0]["message"]
        assert client.post("/v1/predict", json={"text": "great"}).json()["model_version"] == small_predictor.version


def test_reloading_needs_the_admin_scope(small_predictor, tmp_path):
    store = tmp_path / "logs/keys/api_keys.json"
    predict_key = auth.create_key(store, "app", ["predict"])[1]
    admin_key = auth.create_key(store, "ops", ["admin"])[1]
    settings = ServeConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}")
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        assert client.post("/v1/admin/reload").status_code == 401
        assert client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {predict_key}"}).status_code == 403
        assert client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200


@pytest.mark.e2e
def test_sighup_reloads_a_real_server_under_load_without_a_failed_request(served_project, tmp_path):
    project = _project(served_project, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(project, port, f"sqlite:///{project / 'log.db'}")
    try:
        wait_ready(url, server)
        with Load(url) as load:
            time.sleep(1)
            for _ in range(3):
                server.send_signal(signal.SIGHUP)
                time.sleep(1.5)
        assert server.poll() is None, "SIGHUP stopped the server"
        assert len(load.statuses) > 50 and set(load.statuses) == {200}, sorted(set(load.statuses))
        with httpx.Client(base_url=url) as http:
            assert http.get("/readyz").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert stderr.count("reloaded: serving model") == 3, stderr[-3000:]
    assert os.path.exists(project / "log.db")


def _workers(server) -> set[int]:
    """The pids of the server's (uvicorn supervisor's) worker processes (its other child is
    multiprocessing's resource tracker)."""
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as children:
        pids = {int(pid) for pid in children.read().split()}
    workers = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"resource_tracker" not in cmdline.read():
                    workers.add(pid)
        except FileNotFoundError:  # gone meanwhile
            pass
    return workers


@pytest.mark.e2e
def test_a_rolling_restart_of_two_workers_under_load_answers_and_logs_everything(served_project, tmp_path):
    """SIGHUP to a 2-worker server: uvicorn's supervisor starts a new worker, waits until it is
    ready, then stops an old one (which answers what it admitted and ships its spool), for each
    worker in turn. Under load, every request gets a 200, none a connection error, and every
    answered prediction is in the log."""
    project = _project(served_project, tmp_path)
    port, database = free_port(), f"sqlite:///{project / 'log.db'}"
    url = f"http://127.0.0.1:{port}"
    server = _serve(project, port, database, workers=2)
    try:
        wait_ready(url, server, seconds=180)
        old = _workers(server)
        assert len(old) == 2
        with Load(url) as load:
            time.sleep(1)
            server.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 120
            while not (len(_workers(server)) == 2 and not _workers(server) & old):
                assert time.monotonic() < deadline and server.poll() is None, "the workers were not replaced"
                time.sleep(0.2)
            time.sleep(1)  # the new workers under load for a moment
        assert len(load.statuses) > 50 and set(load.statuses) == {200}, sorted(set(load.statuses))
        assert load.transport_errors == 0
        missing = set(load.answered) - _wait_for(database, set(load.answered))
        assert not missing, f"{len(missing)} answered predictions are not in the log"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
