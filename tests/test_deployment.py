"""The container files: what can be checked without a Docker engine or a cluster.

The Dockerfile's runtime stage is read (ENV, COPY, USER, EXPOSE, HEALTHCHECK, CMD) and its
entry command is run directly, on a directory laid out as the image's, with the image's
environment; its health check command is run against it. compose.yaml, the Prometheus config
and the Kubernetes manifest are parsed and checked for the ports, probes and variables the
service reads. Not run: `docker build` (no engine here) and `kubectl apply`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from sentiment_pipeline.core.config import SERVE_ENV_PREFIX, ServeConfig

from .conftest import PROJECT_ROOT
from .test_serving_api import free_port, wait_ready

SERVE_VARIABLES = {SERVE_ENV_PREFIX + name.upper() for name in ServeConfig.model_fields}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def runtime_stage() -> dict:
    stage = dockerfile_stages()[-1]
    env = {}
    for instruction, arguments in stage:
        if instruction == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(arguments)))
    def one(name):
        return next(arguments for instruction, arguments in stage if instruction == name)
    healthcheck = one("HEALTHCHECK")
    return {"env": env, "user": one("USER"), "expose": one("EXPOSE"), "workdir": one("WORKDIR"),
            "cmd": json.loads(one("CMD")), "healthcheck": json.loads(healthcheck[healthcheck.index("CMD") + 3:]),
            "copies": [source for instruction, arguments in stage
                       if instruction == "COPY" and "--from=" not in arguments
                       for source in [a for a in arguments.split() if not a.startswith("--")][:-1]],
            "from": stage[0][1]}


def test_the_image_is_multi_stage_locked_and_runs_as_a_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build = " ".join(arguments for instruction, arguments in stages[0] if instruction == "RUN")
    assert "uv sync --locked --no-dev" in build
    runtime = runtime_stage()
    assert runtime["user"] not in ("root", "0") and runtime["from"].startswith("python:3.11")
    assert runtime["expose"] == runtime["env"]["SENTIMENT_SERVE_PORT"]
    assert "/healthz" in " ".join(runtime["healthcheck"])
    assert runtime["cmd"][:2] == ["sentiment-pipeline", "serve"]
    assert set(runtime["env"]) - {"PATH", "PYTHONUNBUFFERED"} <= SERVE_VARIABLES


def test_the_build_context_holds_what_the_image_copies():
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copies = runtime_stage()["copies"]
    assert {"params.yaml", "dvc.lock", "models/final"} <= set(copies)
    for source in copies:
        assert source not in ignored, f"{source} is copied but .dockerignore drops it"
    build = [[a for a in arguments.split() if not a.startswith("--")][:-1]
             for stage in dockerfile_stages()[:1] for instruction, arguments in stage if instruction == "COPY"]
    for sources in build:
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source


@pytest.mark.e2e
def test_the_images_entry_command_serves_and_passes_its_health_check(served_project, tmp_path):
    runtime = runtime_stage()
    app = tmp_path / "app/project"  # what WORKDIR /app/project holds in the image
    app.mkdir(parents=True)
    for source in runtime["copies"]:
        target = app / source
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (served_project / source).is_dir() else shutil.copy)(served_project / source, target)
    (app / "logs").mkdir()
    port = str(free_port())
    env = {**os.environ, **{k: v.replace("/app/project", str(app)) for k, v in runtime["env"].items() if k != "PATH"},
           "SENTIMENT_SERVE_PORT": port, "SENTIMENT_SERVE_HOST": "127.0.0.1", "SENTIMENT_SERVE_WORKERS": "1"}
    command = [arg.replace("/app/project", str(app)) for arg in runtime["cmd"]]
    command[0] = str(Path(sys.executable).parent / command[0])  # the console script, as on the image's PATH
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", server)
        check = [sys.executable if runtime["healthcheck"][0] == "python" else runtime["healthcheck"][0],
                 *runtime["healthcheck"][1:]]
        assert subprocess.run(check, env=env, timeout=30).returncode == 0
        response = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"text": "lost my bag"})
        assert response.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert (app / "logs/predictions.db").is_file()  # the image's default log location


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())


def test_compose_wires_the_api_to_postgresql_and_prometheus():
    services = compose()["services"]
    api, db = services["api"], services["db"]
    assert set(api["environment"]) <= SERVE_VARIABLES
    assert api["environment"]["SENTIMENT_SERVE_DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in \
        api["environment"]["SENTIMENT_SERVE_DATABASE_URL"]
    port = api["environment"]["SENTIMENT_SERVE_PORT"]
    assert any(mapping.endswith(f":{port}") for mapping in api["ports"])
    assert api["depends_on"]["db"]["condition"] == "service_healthy" and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert int(api["stop_grace_period"].rstrip("s")) > ServeConfig().graceful_shutdown_seconds
    volume = services["prometheus"]["volumes"][0].split(":")[0]
    scrape = yaml.safe_load((PROJECT_ROOT / volume).read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics" and scrape["static_configs"][0]["targets"] == [f"api:{port}"]


def test_kubernetes_probes_ports_and_variables_match_the_service():
    documents = {doc["kind"]: doc for doc in yaml.safe_load_all((PROJECT_ROOT / "deploy/kubernetes.yaml").read_text())}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert set(env) <= SERVE_VARIABLES
    assert container["ports"][0]["containerPort"] == int(env["SENTIMENT_SERVE_PORT"]["value"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "secretKeyRef" in env["SENTIMENT_SERVE_DATABASE_URL"]["valueFrom"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > ServeConfig().graceful_shutdown_seconds
    service = documents["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert service["selector"] == documents["Deployment"]["spec"]["selector"]["matchLabels"]
