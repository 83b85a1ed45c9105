"""The pipeline's own model behind a real server process on a loopback port: start-up,
traffic, graceful shutdown and schemathesis. Every client error and the
schema's details are checked on a small in-process model in test_serving_contract.py."""

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

from sentiment_pipeline.inference.predictor import Predictor

from .test_serving_contract import assert_micro_batching_is_exact

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(root, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(root),
                             "--port", str(port), "--host", "127.0.0.1"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SENTIMENT_LOG_LEVEL": "info", **(env or {})})


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


def test_micro_batching_of_the_pipelines_model_is_exact(served_project):
    """The served ensemble (XGBoost among its members) gives each text of a micro-batch the bits
    it gets alone."""
    assert_micro_batching_is_exact(Predictor.load(served_project))


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(served_project, tmp_path):
    """Property-based requests from the live OpenAPI schema: every check schemathesis has
    (no 5xx, documented status codes and bodies, schema-valid accepted, invalid rejected), with
    an API key of every scope (its `ignored_auth` check: without it, every operation is a 401)."""
    from sentiment_pipeline.serving.auth import create_key

    _, key = create_key(tmp_path / "api_keys.json", "schemathesis", ["predict", "feedback", "admin"])
    port = free_port()
    server = start_server(served_project, port, {"SENTIMENT_SERVE_KEYS_FILE": str(tmp_path / "api_keys.json"),
                                                 "SENTIMENT_SERVE_RATE_LIMIT_PER_SECOND": "100000"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server)
        # No example database: a seeded run must not depend on what earlier runs stored.
        result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "--config-file",
                                 str(Path(__file__).with_name("schemathesis.toml")), "run", f"{url}/openapi.json",
                                 "--checks", "all", "--max-examples", "30", "--seed", "1", "--no-color",
                                 "--generation-database", "none", "--header", f"Authorization: Bearer {key}"],
                                capture_output=True, text=True, timeout=300)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    failures = result.stdout.find("FAILURES")
    assert result.returncode == 0, result.stdout[failures:failures + 4000] if failures >= 0 else result.stdout[-4000:]
    assert "Tested: 7" in result.stdout  # every operation of the schema, /v1/admin/reload and /v1/review included
