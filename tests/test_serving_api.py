"""The REST API: in-process for every client error, and a real server process on a loopback
port for start-up, traffic and graceful shutdown."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.serving.api import create_app

pytestmark = pytest.mark.e2e

LIMITS = ServeConfig(max_texts_per_request=3, max_chars_per_text=50, max_body_bytes=2048)


@pytest.fixture(scope="module")
def client(served_project, tmp_path_factory):
    database = tmp_path_factory.mktemp("log") / "predictions.db"
    settings = LIMITS.model_copy(update={"database_url": f"sqlite:///{database}"})
    with TestClient(create_app(settings, lambda: Predictor.load(served_project))) as test_client:
        yield test_client


def test_one_text_and_a_list(client, served_project):
    one = client.post("/v1/predict", json={"text": "@united thanks, great crew!"})
    assert one.status_code == 200
    body = one.json()
    [prediction] = body["predictions"]
    assert set(prediction["probabilities"]) == {"negative", "neutral", "positive"}
    assert prediction["confidence"] == prediction["probabilities"][prediction["label"]]
    assert prediction["model_version"] == body["model_version"] == Predictor.load(served_project).version
    texts = ["lost my bag", "great crew", "when is boarding?"]
    many = client.post("/v1/predict", json={"texts": texts}, headers={"X-Request-ID": "abc"}).json()
    assert many["request_id"] == "abc"
    assert [p["label"] for p in many["predictions"]] == Predictor.load(served_project).predict(texts).labels
    assert len({p["prediction_id"] for p in many["predictions"]}) == 3


@pytest.mark.parametrize("body, status, field", [
    ({"texts": ["a"] * 4}, 413, "texts"),
    ({"texts": ["ok", "x" * 60]}, 422, "texts[1]"),
    ({"text": "x" * 60}, 422, "text"),
    ({"text": 5}, 422, "text"),
    ({"texts": ["a", None]}, 422, "texts[1]"),
    ({}, 422, "body"),
    ({"text": "a", "texts": ["b"]}, 422, "body"),
    ({"texts": []}, 422, "body"),
    ({"text": "a", "extra": 1}, 422, "extra"),
    ([1, 2], 422, "body"),
])
def test_client_errors_name_the_field(client, body, status, field):
    response = client.post("/v1/predict", json=body)
    assert response.status_code == status, response.text
    assert field in [d["field"] for d in response.json()["details"]]


def test_bodies_over_the_limit_and_broken_json(client):
    big = client.post("/v1/predict", content=b'{"text": "' + b"a" * 5000 + b'"}',
                      headers={"content-type": "application/json"})
    assert big.status_code == 413 and "serve.max_body_bytes=2048" in big.json()["error"]

    def chunked():
        yield b'{"text": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    assert client.post("/v1/predict", content=chunked(), headers={"content-type": "application/json"}).status_code == 413
    broken = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["details"][0]["field"] == "body"


def test_model_health_readiness_and_metrics(client):
    model = client.get("/v1/model").json()
    assert model["family"] and model["classes"] == ["negative", "neutral", "positive"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/predict", json={"text": "great"})
    metrics = client.get("/metrics").text
    assert 'sentiment_requests_total{method="POST",path="/v1/predict",status="200"}' in metrics
    assert "sentiment_request_seconds_bucket" in metrics and "sentiment_prediction_confidence_bucket" in metrics
    assert 'sentiment_predictions_total{label="neutral"}' in metrics
    schema = client.get("/openapi.json").json()
    assert "/v1/predict" in schema["paths"] and "examples" in str(schema["components"]["schemas"]["PredictRequest"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(root),
                             "--port", str(port), "--host", "127.0.0.1"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SENTIMENT_LOG_LEVEL": "info"})


def wait_ready(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("the server did not become ready")


def test_a_real_server_answers_over_a_socket_and_shuts_down_gracefully(served_project):
    port = free_port()
    server = start_server(served_project, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        with httpx.Client(base_url=url, timeout=10) as http:
            response = http.post("/v1/predict", json={"texts": ["worst airline ever", "thank you!"]})
            assert response.status_code == 200
            assert [p["label"] for p in response.json()["predictions"]] == ["negative", "positive"]
            assert http.post("/v1/predict", json={"text": 1}).status_code == 422
            assert http.get("/v1/model").json()["version"] == Predictor.load(served_project).version
            assert "sentiment_predictions_total" in http.get("/metrics").text
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
        stderr = server.communicate()[1]
        assert "shutting down" in stderr and "Finished server process" in stderr
        assert "Traceback" not in stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_tampered_model_stops_start_up_in_one_line(served_project, tmp_path):
    for name in ("dvc.lock", "params.yaml"):
        shutil.copy(served_project / name, tmp_path / name)
    shutil.copytree(served_project / "models/final", tmp_path / "models/final")
    with open(tmp_path / "models/final/model.joblib", "ab") as model:
        model.write(b"\0")
    server = start_server(tmp_path, free_port())
    _, stderr = server.communicate(timeout=60)
    assert server.returncode == 1
    assert stderr.startswith("error: models/final: hash") and "does not match" in stderr
    assert "Traceback" not in stderr


def test_micro_batching_gives_each_text_its_own_numbers(served_project):
    """Concurrent requests predicted together get exactly what they would get alone."""
    import asyncio

    import numpy as np

    from sentiment_pipeline.serving.batching import MicroBatcher

    predictor = Predictor.load(served_project)
    texts = [f"{word} flight number {i}" for i, word in enumerate(["awful", "great", "late", "ok"] * 10)]

    async def concurrently():
        batcher = MicroBatcher(predictor, max_batch=16, max_wait_ms=5)
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.predict([t]) for t in texts),
                                           batcher.predict(texts[:3]))
        finally:
            await batcher.close()
        return results, batcher.batches

    results, batches = asyncio.run(concurrently())
    assert batches < len(texts)  # they were batched
    for text, result in zip(texts, results[:-1], strict=True):  # the last: the 3-text request
        alone = predictor.predict([text])
        assert result.labels == alone.labels
        assert np.array_equal(result.probabilities, alone.probabilities)
        assert np.array_equal(result.confidence, alone.confidence)
    assert results[-1].labels == predictor.predict(texts[:3]).labels


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(served_project):
    """Property-based requests from the live OpenAPI schema: every check schemathesis has
    (no 5xx, documented status codes and bodies, schema-valid accepted, invalid rejected)."""
    port = free_port()
    server = start_server(served_project, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        # No example database: a seeded run must not depend on what earlier runs stored.
        result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "--config-file",
                                 str(Path(__file__).with_name("schemathesis.toml")), "run", f"{url}/openapi.json",
                                 "--checks", "all", "--max-examples", "30", "--seed", "1", "--no-color",
                                 "--generation-database", "none"],
                                capture_output=True, text=True, timeout=300)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    failures = result.stdout.find("FAILURES")
    assert result.returncode == 0, result.stdout[failures:failures + 4000] if failures >= 0 else result.stdout[-4000:]
    assert "Tested: 5" in result.stdout


@pytest.mark.parametrize("text", ["\ud800", "bad\x00byte"])
def test_texts_the_log_cannot_store_are_a_422_naming_them(client, text):
    import json as json_module

    for body, where in (({"text": text}, "text"), ({"texts": ["fine", text]}, "texts[1]")):
        response = client.post("/v1/predict", content=json_module.dumps(body),
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert where in response.json()["details"][0]["message"]
