"""The prediction log on SQLite and on a real PostgreSQL server: nothing lost under concurrent
load, text or only its hash, feedback, and the export back into the pipeline."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import httpx
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import connect, feedback, predictions, text_sha256
from sentiment_pipeline.serving.app import create_app

from .postgres import postgres_server
from .test_serving_api import free_port, start_server, wait_ready

pytestmark = pytest.mark.e2e

TEXTS = ["lost my bag again", "great crew, thanks!", "when does boarding start?"]


def count(url: str, table=predictions) -> int:
    engine = connect(url)
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return rows


async def send_concurrently(url: str, n: int, connections: int = 20) -> list[int]:
    limit = asyncio.Semaphore(connections)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        async def one(i: int) -> int:
            async with limit:
                response = await http.post("/v1/predict", json={"text": f"{TEXTS[i % 3]} #{i}"})
                return response.status_code
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_concurrent_requests_to_a_real_server_are_all_logged(served_project, tmp_path):
    database = f"sqlite:///{tmp_path / 'log.db'}"
    params = yaml.safe_load((served_project / "params.yaml").read_text())
    params.setdefault("serve", {})["database_url"] = database
    (tmp_path / "project").mkdir()
    for name in ("dvc.lock",):
        (tmp_path / "project" / name).write_bytes((served_project / name).read_bytes())
    subprocess.run(["cp", "-r", str(served_project / "models"), str(tmp_path / "project")], check=True)
    (tmp_path / "project/params.yaml").write_text(yaml.safe_dump(params))
    port = free_port()
    server = start_server(tmp_path / "project", port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        statuses = asyncio.run(send_concurrently(f"http://127.0.0.1:{port}", 300))
        assert statuses == [200] * 300
        server.send_signal(signal.SIGTERM)  # the queue is drained before the process exits
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert count(database) == 300
    assert "300 row(s) written" in server.communicate()[1]


def exercise(url: str, served_project, log_text: bool = True) -> None:
    """Predict, give feedback, check the rows: the same on SQLite and PostgreSQL."""
    settings = ServeConfig(database_url=url, log_text=log_text)
    with TestClient(create_app(settings, lambda: Predictor.load(served_project))) as client:
        answer = client.post("/v1/predict", json={"texts": TEXTS}, headers={"X-Request-ID": "req-1"}).json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        assert client.post("/v1/feedback", json={"prediction_id": ids[2], "label": "neutral"}).status_code == 201
        assert client.post("/v1/feedback", json={"prediction_id": ids[0], "label": "negative"}).status_code == 201
        unknown = client.post("/v1/feedback", json={"prediction_id": "0" * 32, "label": "neutral"})
        assert unknown.status_code == 404 and unknown.json()["details"][0]["field"] == "prediction_id"
        bad = client.post("/v1/feedback", json={"prediction_id": ids[1], "label": "meh"})
        assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "label"
    engine = connect(url)
    with engine.connect() as connection:
        rows = connection.execute(select(predictions).order_by(predictions.c.id)).mappings().all()
        labelled = connection.execute(select(func.count()).select_from(feedback)).scalar_one()
    engine.dispose()
    assert [r["prediction_id"] for r in rows] == ids and labelled == 2
    assert {r["request_id"] for r in rows} == {"req-1"}
    assert [r["text_sha256"] for r in rows] == [text_sha256(t) for t in TEXTS]
    assert [r["text"] for r in rows] == (TEXTS if log_text else [None] * 3)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-9 and r["latency_ms"] > 0 for r in rows)
    assert [r["label"] for r in rows] == [p["label"] for p in answer["predictions"]]


def test_sqlite_log_feedback_and_hash_only_mode(served_project, tmp_path):
    exercise(f"sqlite:///{tmp_path / 'a.db'}", served_project)
    exercise(f"sqlite:///{tmp_path / 'b.db'}", served_project, log_text=False)


def test_postgresql_log_on_a_real_server(served_project):
    with postgres_server() as url:
        exercise(url, served_project)
        assert count(url) == 3


def test_feedback_becomes_training_data_for_the_download_stage(served_project, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    texts = [f"{word} flight {i}" for word in ("awful", "lovely") for i in range(3)]
    with TestClient(create_app(ServeConfig(database_url=url), lambda: Predictor.load(served_project))) as client:
        answer = client.post("/v1/predict", json={"texts": texts}).json()
        for text, prediction in zip(texts, answer["predictions"], strict=True):
            label = "negative" if text.startswith("awful") else "positive"
            client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"], "label": label})
    exported = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "export-feedback",
                               "data/external/feedback.csv", "--database-url", url],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    frame = pd.read_csv(tmp_path / "data/external/feedback.csv")
    assert sorted(frame["text"]) == sorted(texts)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "download": {"source": "file", "path": "data/external/feedback.csv", "min_rows": 2},
        "train": {"cv_folds": 2}}))
    downloaded = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "download"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
    assert downloaded.returncode == 0, downloaded.stderr
    raw = pd.read_csv(tmp_path / "data/raw/reviews.csv")
    assert raw["label"].value_counts().to_dict() == {"negative": 3, "positive": 3}
