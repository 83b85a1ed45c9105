"""Access control (serving/auth.py), in-process on the small model (fast tier): API keys with
scopes, 401/403/429 as the API's JSON errors, open health checks, the admin-only dashboard (its
login cookie) and metrics, the key id on every logged row, revocation without a restart, the
`keys` commands, `serve` refusing to listen beyond loopback without keys, and `export-feedback`
keeping only the labels of chosen keys or scopes."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from sentiment_pipeline.cli import app as cli
from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.core.errors import ConfigError
from sentiment_pipeline.predlog.prediction_log import connect, feedback, predictions
from sentiment_pipeline.serving import auth
from sentiment_pipeline.serving.app import create_app

from .small_project import write_project
from .test_serving_api import free_port


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def keys(tmp_path) -> dict[str, str]:
    """A key store with a key per scope, one with all of them and a revoked one."""
    store = tmp_path / "logs/keys/api_keys.json"
    made = {name: auth.create_key(store, name, scopes)[1] for name, scopes in (
        ("predict", ["predict"]), ("feedback", ["feedback"]), ("admin", ["admin"]),
        ("all", ["predict", "feedback", "admin"]), ("old", ["predict", "feedback", "admin"]))}
    auth.revoke_key(store, auth.key_id_of(made["old"]) or "")
    return made


def serve_settings(tmp_path: Path, **overrides) -> ServeConfig:
    return ServeConfig(database_url=f"sqlite:///{tmp_path / 'predictions.db'}", **overrides)


@pytest.fixture()
def client(small_predictor, tmp_path, keys):
    with TestClient(create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)) as test_client:
        yield test_client


def test_a_missing_invalid_or_revoked_key_is_a_401_in_the_apis_error_shape(client, keys):
    text = {"text": "great crew"}
    missing = client.post("/v1/predict", json=text)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json() == {"error": "missing API key", "details": [
        {"field": "authorization", "message": "send the key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"}]}
    forged = keys["predict"][:-4] + "AAAA"
    for key, error in ((forged, "invalid API key"), ("sp_nothing", "invalid API key"), ("Basic abc", "invalid API key"),
                       (keys["old"], "revoked API key")):
        response = client.post("/v1/predict", json=text, headers=bearer(key))
        assert response.status_code == 401 and response.json()["error"] == error, key
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert client.post("/v1/predict", json=text, headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    assert client.get("/v1/model").status_code == 401
    assert client.post("/v1/feedback", json={"prediction_id": "0" * 32, "label": "negative"}).status_code == 401


def test_a_key_without_the_scope_is_a_403_naming_it(client, keys):
    response = client.post("/v1/feedback", json={"prediction_id": "0" * 32, "label": "negative"},
                           headers=bearer(keys["predict"]))
    assert response.status_code == 403
    assert response.json()["details"] == [{"field": "scope", "message":
                                           f"key {auth.key_id_of(keys['predict'])} lacks the 'feedback' scope"}]
    assert 'scope="feedback"' in response.headers["www-authenticate"]
    assert client.post("/v1/predict", json={"text": "hi"}, headers=bearer(keys["feedback"])).status_code == 403
    assert client.post("/v1/predict", json={"text": "hi"}, headers=bearer(keys["admin"])).status_code == 403
    for key in ("predict", "feedback", "admin"):  # any valid key reads the model card
        assert client.get("/v1/model", headers=bearer(keys[key])).status_code == 200


def test_the_key_is_taken_as_bearer_or_x_api_key(client, keys):
    for headers in (bearer(keys["predict"]), {"X-API-Key": keys["predict"]}):
        assert client.post("/v1/predict", json={"text": "great crew"}, headers=headers).status_code == 200


def test_health_and_readiness_stay_open(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_metrics_and_the_dashboard_need_admin(client, keys):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(keys["predict"])).status_code == 403
    metrics = client.get("/metrics", headers=bearer(keys["admin"]))
    assert metrics.status_code == 200 and "sentiment_requests_total" in metrics.text
    login = client.get("/dashboard")  # a browser gets the login form, with the status
    assert login.status_code == 401 and 'id="login-form"' in login.text and "small0000000" not in login.text
    refused = client.get("/dashboard", headers=bearer(keys["predict"]))
    assert refused.status_code == 403 and "lacks the &#x27;admin&#x27; scope" in refused.text
    page = client.get("/dashboard", headers=bearer(keys["admin"]))
    assert page.status_code == 200 and "small0000000" in page.text


def test_the_dashboard_login_keeps_the_key_in_a_strict_http_only_cookie(small_predictor, tmp_path, keys):
    app = create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as browser:
        wrong = browser.post("/dashboard/login", data={"key": keys["predict"]})
        assert wrong.status_code == 403 and 'id="login-error"' in wrong.text and "set-cookie" not in wrong.headers
        cross_site = browser.post("/dashboard/login", data={"key": keys["all"]}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers
        login = browser.post("/dashboard/login", data={"key": keys["all"]})
        assert login.status_code == 303 and login.headers["location"] == "/dashboard"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"{auth.DASHBOARD_COOKIE}=") and "HttpOnly" in cookie and "Secure" in cookie
        assert "SameSite=strict" in cookie and "Path=/" in cookie and "Max-Age=28800" in cookie
        page = browser.get("/dashboard")
        assert page.status_code == 200 and 'id="logout"' in page.text
        # the page's text box: the cookie, no header
        assert browser.post("/v1/predict", json={"text": "lost my bag"}).status_code == 200
        # only the routes a browser uses take the cookie
        assert browser.post("/v1/feedback", json={"prediction_id": "0" * 32, "label": "negative"}).status_code == 401
        assert browser.get("/metrics").status_code == 401
        logout = browser.post("/dashboard/logout")
        assert logout.status_code == 303 and 'Max-Age=0' in logout.headers["set-cookie"]
        assert browser.get("/dashboard").status_code == 401


def test_every_logged_prediction_and_label_names_its_key(small_predictor, tmp_path, keys):
    app = create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)
    with TestClient(app) as client:
        answer = client.post("/v1/predict", json={"texts": ["great", "awful"]}, headers=bearer(keys["predict"])).json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        asyncio.run(app.state.prediction_log.flush(10))  # the prediction is in the database
        recorded = client.post("/v1/feedback", json={"prediction_id": ids[0], "label": "positive"},
                               headers={"X-API-Key": keys["feedback"]})
        assert recorded.status_code == 201
    engine = connect(f"sqlite:///{tmp_path / 'predictions.db'}", create=False)
    with engine.connect() as connection:
        predicted = set(connection.execute(select(predictions.c.prediction_id, predictions.c.key_id)))
        labelled = list(connection.execute(select(feedback.c.prediction_id, feedback.c.key_id)))
    engine.dispose()
    assert predicted == {(i, auth.key_id_of(keys["predict"])) for i in ids}
    assert labelled == [(ids[0], auth.key_id_of(keys["feedback"]))]


def test_past_its_burst_a_key_gets_429_with_retry_after(small_predictor, tmp_path, keys):
    settings = serve_settings(tmp_path, rate_limit_per_second=0.5, rate_limit_burst=3)
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        statuses = [client.get("/v1/model", headers=bearer(keys["predict"])).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.post("/v1/predict", json={"text": "hi"}, headers=bearer(keys["predict"]))
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"  # 1 token at 0.5/s
        assert limited.json()["error"] == "rate limit exceeded"
        assert client.get("/v1/model", headers=bearer(keys["admin"])).status_code == 200  # another key's bucket
        assert client.get("/healthz").status_code == 200  # never limited


def test_token_buckets_refill_at_the_rate_up_to_the_burst():
    buckets = auth.TokenBuckets()
    assert [buckets.take("k", rate=10, burst=2, now=0.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]
    assert buckets.take("k", rate=10, burst=2, now=0.1) == 0.0  # one token back after 0.1 s
    assert buckets.take("k", rate=10, burst=2, now=100.0) == 0.0  # a long pause refills to the burst only
    assert buckets.take("k", rate=10, burst=2, now=100.0) == 0.0
    assert buckets.take("k", rate=10, burst=2, now=100.0) > 0


def test_a_revoked_key_is_refused_within_a_second_without_a_restart(small_predictor, tmp_path, keys):
    with TestClient(create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)) as client:
        assert client.get("/v1/model", headers=bearer(keys["predict"])).status_code == 200
        auth.revoke_key(tmp_path / "logs/keys/api_keys.json", auth.key_id_of(keys["predict"]) or "")
        time.sleep(auth.RELOAD_SECONDS + 0.1)
        response = client.get("/v1/model", headers=bearer(keys["predict"]))
        assert response.status_code == 401 and response.json()["error"] == "revoked API key"
        _, added = auth.create_key(tmp_path / "logs/keys/api_keys.json", "new", ["predict"])
        time.sleep(auth.RELOAD_SECONDS + 0.1)
        assert client.get("/v1/model", headers=bearer(added)).status_code == 200


def test_without_keys_a_loopback_server_is_open_until_the_first_key(small_predictor, tmp_path):
    with TestClient(create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)) as client:
        assert client.post("/v1/predict", json={"text": "great"}).status_code == 200
        assert client.get("/metrics").status_code == 200 and client.get("/dashboard").status_code == 200
        record, key = auth.create_key(tmp_path / "logs/keys/api_keys.json", "first", ["predict"])
        time.sleep(auth.RELOAD_SECONDS + 0.1)
        assert client.post("/v1/predict", json={"text": "great"}).status_code == 401
        auth.revoke_key(tmp_path / "logs/keys/api_keys.json", record.id)  # revoking every key does not open it again
        time.sleep(auth.RELOAD_SECONDS + 0.1)
        assert client.post("/v1/predict", json={"text": "great"}).status_code == 401


def test_without_keys_a_server_beyond_loopback_refuses_everything(small_predictor, tmp_path):
    settings = serve_settings(tmp_path, host="0.0.0.0")
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        assert client.post("/v1/predict", json={"text": "great"}).status_code == 401
        assert client.get("/healthz").status_code == 200


def test_auth_none_asks_for_nothing_and_its_schema_says_so(small_predictor, tmp_path, keys):
    settings = serve_settings(tmp_path, auth="none", host="0.0.0.0")
    with TestClient(create_app(settings, lambda: small_predictor, tmp_path)) as client:
        assert client.post("/v1/predict", json={"text": "great"}).status_code == 200
        schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema["paths"]["/v1/predict"]["post"]
    assert "401" not in schema["paths"]["/v1/predict"]["post"]["responses"]


def test_the_openapi_schema_documents_the_schemes_and_scopes(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key" and schemes["APIKeyHeader"]["in"] == "header"
    paths = schema["paths"]
    assert {"HTTPBearer": ["predict"]} in paths["/v1/predict"]["post"]["security"]
    assert paths["/v1/feedback"]["post"]["security"] == [{"HTTPBearer": ["feedback"]}, {"APIKeyHeader": ["feedback"]}]
    assert "security" not in paths["/healthz"]["get"] and "security" not in paths["/readyz"]["get"]
    responses = paths["/v1/predict"]["post"]["responses"]
    assert {"401", "403", "429"} <= set(responses) and "Retry-After" in responses["429"]["headers"]


def test_verifying_a_key_is_a_few_microseconds(tmp_path, keys):
    settings = ServeConfig(rate_limit_per_second=1e9, rate_limit_burst=10**9)  # the bucket is taken, never empty
    access = auth.AccessControl.from_settings(settings, tmp_path)
    for i in range(50):  # the number of keys does not matter: a dict lookup by id
        auth.create_key(tmp_path / "logs/keys/api_keys.json", f"k{i}", ["feedback"])
    assert access.keys is not None
    access.keys.refresh(force=True)
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        access.check(keys["all"], ["predict"])
    per_call = (time.perf_counter() - started) / n
    print(f"access check: {per_call * 1e6:.2f} us")
    assert per_call < 50e-6, per_call  # measured ~2 us; generous for loaded CI machines


# ------------------------------------------------------------------ the CLI
def test_keys_create_list_and_revoke(tmp_path):
    runner = CliRunner()
    store = tmp_path / "logs/keys/api_keys.json"
    created = runner.invoke(cli, ["keys", "create", "--project", str(tmp_path), "--name", "mobile app",
                                  "--scope", "predict", "--scope", "feedback"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    key_id = auth.key_id_of(key)
    assert key.startswith("sp_") and key_id and len(key) == 3 + 12 + 1 + 43
    assert f"created key {key_id} (mobile app; scopes predict, feedback)" in created.stderr
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert key not in store.read_text() and auth.key_digest(key) in store.read_text()  # only the digest
    to_file = runner.invoke(cli, ["keys", "create", "--project", str(tmp_path), "--name", "prometheus",
                                  "--scope", "admin", "--secret-file", str(tmp_path / "prometheus.key")])
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert stat.S_IMODE((tmp_path / "prometheus.key").stat().st_mode) == 0o600
    prometheus_id = auth.key_id_of((tmp_path / "prometheus.key").read_text().strip())
    listed = runner.invoke(cli, ["keys", "list", "--project", str(tmp_path)])
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{key_id}  active ") and "mobile app" in lines[0]
    assert lines[1].startswith(f"{prometheus_id}  active   admin")
    revoked = runner.invoke(cli, ["keys", "revoke", "--project", str(tmp_path), key_id or ""])
    assert revoked.exit_code == 0 and "servers refuse it within 1 s" in revoked.stderr
    assert runner.invoke(cli, ["keys", "list", "--project", str(tmp_path)]).stdout.startswith(f"{key_id}  revoked")
    unknown = runner.invoke(cli, ["keys", "revoke", "--project", str(tmp_path), "000000000000"])
    assert unknown.exit_code == 1 and "no key with id '000000000000'" in unknown.stderr
    bad_scope = runner.invoke(cli, ["keys", "create", "--project", str(tmp_path), "--name", "x", "--scope", "root"])
    assert bad_scope.exit_code == 1 and "scopes must be some of predict, feedback, admin" in bad_scope.stderr


def test_keys_go_to_serve_keys_file_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SENTIMENT_SERVE_KEYS_FILE", str(tmp_path / "elsewhere.json"))
    assert CliRunner().invoke(cli, ["keys", "create", "--project", str(tmp_path), "--name", "n"]).exit_code == 0
    assert [k.scopes for k in auth.read_store(tmp_path / "elsewhere.json")] == [("predict",)]


def test_serve_refuses_a_non_loopback_host_without_keys_in_one_line(small_predictor, tmp_path):
    project = write_project(tmp_path, small_predictor)
    env = {**os.environ, "SENTIMENT_LOG_LEVEL": "warning"}
    env.pop("SENTIMENT_SERVE_AUTH", None)
    done = subprocess.run([sys.executable, "-m", "sentiment_pipeline", "serve", "--project", str(project),
                           "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: serve.host=0.0.0.0 is reachable")
    assert "sentiment-pipeline keys create" in done.stderr and "serve.auth: none" in done.stderr


def test_check_auth_warns_on_loopback_and_for_auth_none_beyond_it(tmp_path, caplog):
    caplog.set_level("WARNING")
    auth.check_auth(ServeConfig(host="127.0.0.1"), tmp_path)  # no keys, loopback: open, warned
    assert "serving without authentication on loopback" in caplog.text
    auth.check_auth(ServeConfig(host="0.0.0.0", auth="none"), tmp_path)
    assert "anyone who can reach port 8000" in caplog.text
    with pytest.raises(ConfigError, match="holds no active API key"):
        auth.check_auth(ServeConfig(host="::"), tmp_path)
    record, _ = auth.create_key(tmp_path / "logs/keys/api_keys.json", "k", ["predict"])
    auth.check_auth(ServeConfig(host="0.0.0.0"), tmp_path)  # a key: fine
    auth.revoke_key(tmp_path / "logs/keys/api_keys.json", record.id)
    with pytest.raises(ConfigError, match="holds no active API key"):
        auth.check_auth(ServeConfig(host="10.0.0.5"), tmp_path)
    (tmp_path / "logs/keys/api_keys.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not an API key store"):
        auth.check_auth(ServeConfig(host="0.0.0.0"), tmp_path)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("10.1.2.3", False), ("api.example.org", False)])
def test_loopback_hosts(host, loopback):
    assert auth.is_loopback(host) is loopback


def test_export_feedback_keeps_only_the_chosen_keys_or_scopes(small_predictor, tmp_path):
    store = tmp_path / "logs/keys/api_keys.json"
    trusted = auth.create_key(store, "operators", ["predict", "feedback", "admin"])[1]
    public = auth.create_key(store, "public app", ["predict", "feedback"])[1]
    app = create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)
    with TestClient(app) as client:
        texts = ["lost my bag", "great crew", "when is boarding"]
        answer = client.post("/v1/predict", json={"texts": texts}, headers=bearer(trusted)).json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        asyncio.run(app.state.prediction_log.flush(10))
        for key, prediction_id, label in ((trusted, ids[0], "negative"), (public, ids[0], "positive"),
                                          (public, ids[1], "negative"), (trusted, ids[2], "neutral")):
            assert client.post("/v1/feedback", json={"prediction_id": prediction_id, "label": label},
                               headers=bearer(key)).status_code == 201
    public_id, trusted_id = auth.key_id_of(public), auth.key_id_of(trusted)
    runner = CliRunner()
    settings = ["--project", str(tmp_path), "--database-url", f"sqlite:///{tmp_path / 'predictions.db'}"]

    def export(*options: str) -> list[tuple[str, str]]:
        out = tmp_path / "feedback.csv"
        done = runner.invoke(cli, ["export-feedback", str(out), *settings, *options])
        assert done.exit_code == 0, done.output
        return sorted(pd.read_csv(out).itertuples(index=False, name=None))

    everything = export()
    assert everything == sorted([("lost my bag", "positive"), ("great crew", "negative"), ("when is boarding", "neutral")])
    # only the trusted key: its own label of ids[0] counts although the public key's is newer
    assert export("--key-id", trusted_id or "") == sorted([("lost my bag", "negative"), ("when is boarding", "neutral")])
    assert export("--key-id", public_id or "", "--key-id", trusted_id or "") == everything
    assert export("--scope", "admin") == export("--key-id", trusted_id or "")
    auth.revoke_key(store, public_id or "")
    assert export("--scope", "feedback") == everything  # revoked or not, both keys hold the scope
    assert export("--key-id", "000000000000") == []
    bad = runner.invoke(cli, ["export-feedback", str(tmp_path / "x.csv"), *settings, "--scope", "root"])
    assert bad.exit_code == 2 and "'root' is not a scope" in bad.output


# ------------------------------------------------------------------ the deployment files
def test_the_deployment_files_mount_the_key_store_and_give_prometheus_a_key():
    import yaml

    from .conftest import PROJECT_ROOT

    services = yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())["services"]
    api, prometheus = services["api"], services["prometheus"]
    store = Path(api["environment"]["SENTIMENT_SERVE_KEYS_FILE"])
    mounts = {target: source for source, target, *_ in (v.split(":") for v in api["volumes"])}
    assert mounts[str(store.parent)] == "./logs/keys"  # a directory: revocations show in the container
    scrape = yaml.safe_load((PROJECT_ROOT / "deploy/prometheus.yml").read_text())["scrape_configs"][0]
    credentials = Path(scrape["authorization"]["credentials_file"])
    assert scrape["authorization"]["type"] == "Bearer"
    assert any(v.split(":")[1] == str(credentials.parent) for v in prometheus["volumes"])
    documents = {d["kind"]: d for d in yaml.safe_load_all((PROJECT_ROOT / "deploy/kubernetes.yaml").read_text())}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    path = Path({e["name"]: e for e in container["env"]}["SENTIMENT_SERVE_KEYS_FILE"]["value"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert "subPath" not in mount and mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 10001
