"""Nothing answered is lost: a real server under load, a real PostgreSQL server stopped for a
minute and started again, then the server killed (SIGKILL) and restarted on its spool."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from sentiment_pipeline.predlog.prediction_log import feedback, predictions

from .postgres import postgres_cluster, postgres_server
from .test_serving_api import free_port, wait_ready
from .test_spool import assert_upgrade_from_the_first_schema

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 60  # the case: a minute without the database, under load
FLUSH_MS = 50.0


def _project(served_project: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.lock", "params.yaml"):
        shutil.copy(served_project / name, project / name)
    shutil.copytree(served_project / "models", project / "models")
    return project


def _serve(project: Path, port: int, database_url: str, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "SENTIMENT_SERVE_DATABASE_URL": database_url, "SENTIMENT_SERVE_LOG_FLUSH_MS": str(FLUSH_MS),
           "SENTIMENT_SERVE_SPOOL_DIR": str(project / "spool"), "SENTIMENT_LOG_LEVEL": "info"}
    return subprocess.Popen([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(project),
                             "--port", str(port), "--host", "127.0.0.1", "--workers", str(workers)], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class Load:
    """Clients posting predictions until stopped; remembers every answered prediction id and
    when its answer arrived."""

    def __init__(self, url: str, clients: int = 4) -> None:
        self.url, self.answered, self.statuses = url, {}, []
        self.transport_errors = 0  # requests that got no response at all
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    response = http.post("/v1/predict", json={"texts": [f"late again {client}-{i}", f"thanks {i}"]})
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    continue  # the server is gone (killed): nothing was answered
                arrived = time.monotonic()
                with self._lock:
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        for prediction in response.json()["predictions"]:
                            self.answered[prediction["prediction_id"]] = arrived
                time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _logged(url: str, table=predictions) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(select(table.c.prediction_id)).scalars())
    finally:
        engine.dispose()


def _wait_for(url: str, expected: set[str], seconds: float = 90, settled: float | None = None) -> set[str]:
    """The logged ids once ``expected`` are all there, or ``seconds`` passed, or (``settled``)
    nothing new arrived for that long: where some rows may rightly be lost (a SIGKILL's last
    flush interval) waiting for all of them would only wait out ``seconds``."""
    deadline = time.monotonic() + seconds
    count, changed = -1, time.monotonic()
    while True:
        logged = _logged(url)
        if len(logged) != count:
            count, changed = len(logged), time.monotonic()
        if expected <= logged or time.monotonic() > deadline:
            return logged
        if settled is not None and logged and time.monotonic() - changed > settled:
            return logged
        time.sleep(0.5)


def test_a_database_outage_then_a_killed_server_lose_nothing_beyond_the_flush_interval(served_project, tmp_path):
    project = _project(served_project, tmp_path)
    with postgres_cluster() as database:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = _serve(project, port, database.url)
        try:
            wait_ready(url, server)
            # 1. a minute-long outage under load: every answered prediction reaches the database
            with Load(url) as load:
                time.sleep(2)
                database.stop("immediate")  # a crash: connections cut
                time.sleep(OUTAGE_SECONDS / 2)
                with httpx.Client(base_url=url, timeout=5) as http:
                    some_id = next(iter(load.answered))
                    started = time.monotonic()
                    response = http.post("/v1/feedback", json={"prediction_id": some_id, "label": "negative"})
                    feedback_seconds = time.monotonic() - started
                    assert http.get("/readyz").status_code == 200  # the spool is far from its budget
                time.sleep(OUTAGE_SECONDS / 2)
                database.start()
                time.sleep(2)
            assert response.status_code in (201, 202) and feedback_seconds < 1.0, (response.text, feedback_seconds)
            assert set(load.statuses) == {200}, sorted(set(load.statuses))
            logged = _wait_for(database.url, set(load.answered))
            assert logged == set(load.answered), f"{len(set(load.answered) - logged)} answered, not logged"
            assert some_id in _logged(database.url, feedback)
            first_round = set(load.answered)

            # 2. the database away again, the server killed under load, then both back
            database.stop("immediate")
            with Load(url) as load:
                time.sleep(3)
                server.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                server.wait(timeout=10)
                time.sleep(0.5)
            spooled = list((project / "spool").rglob("*.jsonl"))
            assert spooled, "the killed server left no spool"
            database.start()
            server = _serve(project, port, database.url)  # adopts the dead process's spool
            wait_ready(url, server)
            # the adopted spool ships in well under a second; 5 s without a new row: it is done
            logged = _wait_for(database.url, set(load.answered) | first_round, seconds=60, settled=5)
            lost = {pid: at for pid, at in load.answered.items() if pid not in logged}
            # what may be lost: answers sent within the last flush interval (and its fsync) before the kill
            late = [killed_at - at for at in lost.values()]
            assert all(age < FLUSH_MS / 1000 + 0.25 for age in late), sorted(late)[-5:]
            assert first_round <= logged and len(load.answered) > 100
            print(f"outage: {len(first_round)} rows, all logged; kill: {len(load.answered)} answered, {len(lost)} lost")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def test_a_log_from_before_migrations_is_upgraded_on_postgresql():
    with postgres_server() as url:
        assert_upgrade_from_the_first_schema(url)
