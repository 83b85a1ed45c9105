"""The fast path of ``POST /v1/predict`` (routes/predict.py ``PredictRoute``): a well-formed
request skips FastAPI's dependency solving, anything else goes through FastAPI's handler. Both
paths must answer every request alike: status, body (but for the random ids) and headers, for
valid and invalid bodies and every way of presenting a key, or none."""

from __future__ import annotations

import json

import pytest
from fastapi import routing
from fastapi.testclient import TestClient
from sqlalchemy import select

from sentiment_pipeline.predlog.prediction_log import connect, predictions
from sentiment_pipeline.serving import auth
from sentiment_pipeline.serving.app import create_app
from sentiment_pipeline.serving.deps import serving_state
from sentiment_pipeline.serving.routes import predict as predict_route
from sentiment_pipeline.serving.routes.predict import PredictRoute

from .test_auth import keys, serve_settings  # noqa: F401 - the fixture

JSON = "application/json"
RANDOM = {"prediction_id", "request_id"}
SENT_HEADERS = ("content-type", "www-authenticate", "retry-after", "content-length")


def cases(made: dict[str, str]) -> list[tuple[str, bytes, dict[str, str], bool]]:
    """``made``: the keys fixture's keys. (name, body, headers, whether the fast path takes it)."""
    good, bearer = b'{"text": "great crew, thanks"}', {"Authorization": f"Bearer {made['predict']}"}
    with_key = {"content-type": JSON, **bearer}
    return [
        ("one text", good, with_key, True),
        ("texts", b'{"texts": ["lost my bag", "fine"]}', with_key, True),
        ("explained", b'{"text": "lost my bag again", "explain": 2}', with_key, True),
        ("explain 2.0", b'{"text": "lost my bag again", "explain": 2.0}', with_key, True),
        ("X-API-Key", good, {"content-type": JSON, "X-API-Key": made["predict"]}, True),
        ("cookie", good, {"content-type": JSON, "Cookie": f"{auth.DASHBOARD_COOKIE}={made['all']}"}, True),
        ("bearer before a cookie", good, {**with_key, "Cookie": f"{auth.DASHBOARD_COOKIE}=nonsense"}, True),
        ("no key", good, {"content-type": JSON}, True),
        ("unknown key", good, {"content-type": JSON, "Authorization": "Bearer sp_nothing"}, True),
        ("revoked key", good, {"content-type": JSON, "Authorization": f"Bearer {made['old']}"}, True),
        ("key without the scope", good, {"content-type": JSON, "Authorization": f"Bearer {made['feedback']}"}, True),
        ("text too long", json.dumps({"text": "a" * 5001}).encode(), with_key, True),
        ("too many texts", json.dumps({"texts": ["a"] * 257}).encode(), with_key, True),
        ("charset", good, {**with_key, "content-type": "application/json; charset=utf-8"}, False),
        ("text/plain", good, {**with_key, "content-type": "text/plain"}, False),
        ("no content type", good, bearer, False),
        ("not JSON", b'{"text": ', with_key, False),
        ("not UTF-8", b'{"text": "\xff"}', with_key, False),
        ("empty body", b"", with_key, False),
        ("both fields", b'{"text": "a", "texts": ["b"]}', with_key, False),
        ("an extra field", b'{"text": "a", "lang": "en"}', with_key, False),
        ("a NUL", b'{"text": "a\\u0000b"}', with_key, False),
        ("explain null", b'{"text": "a", "explain": null}', with_key, False),
        ("invalid body, no key", b'{"texts": []}', {"content-type": JSON}, False),
        ("a list", b'["great"]', with_key, False),
    ]


def answer(response) -> tuple:
    body = response.json()
    for prediction in body.get("predictions", []):
        prediction.pop("prediction_id")
    return (response.status_code, {k: v for k, v in body.items() if k not in RANDOM},
            {h: response.headers.get(h) for h in SENT_HEADERS})


def test_the_fast_path_and_fastapis_answer_every_request_alike(small_predictor, tmp_path, keys, monkeypatch):  # noqa: F811
    fast_answered, solved = [], []
    principal, solve = predict_route.predict_principal, routing.solve_dependencies

    async def counting_principal(request):
        fast_answered.append(request.url.path)
        return await principal(request)

    async def counting_solve(*args, **kwargs):
        solved.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(predict_route, "predict_principal", counting_principal)
    monkeypatch.setattr(routing, "solve_dependencies", counting_solve)
    answers = {}
    for fast in (True, False):
        monkeypatch.setattr(PredictRoute, "fast_path", fast)
        with TestClient(create_app(serve_settings(tmp_path / str(fast)), lambda: small_predictor, tmp_path)) as client:
            for name, body, headers, takes_fast_path in cases(keys):
                fast_answered.clear()
                solved.clear()
                response = client.post("/v1/predict", content=body, headers=headers)
                answers.setdefault(name, []).append(answer(response))
                assert bool(fast_answered) == (fast and takes_fast_path), (name, fast)
                if takes_fast_path:  # FastAPI's own path solves the dependencies; the fast one does not
                    assert bool(solved) == (not fast), (name, fast)
    for name, (fast, full) in answers.items():
        assert fast == full, name
    statuses = {name: fast[0] for name, (fast, _) in answers.items()}
    assert statuses["one text"] == statuses["cookie"] == statuses["explain 2.0"] == 200
    assert statuses["no key"] == statuses["revoked key"] == 401 and statuses["key without the scope"] == 403
    assert statuses["not JSON"] == statuses["both fields"] == statuses["text too long"] == 422
    assert statuses["too many texts"] == 413


@pytest.mark.parametrize("fast", [True, False])
def test_both_paths_log_the_key_and_apply_its_rate_limit(small_predictor, tmp_path, monkeypatch, fast):
    monkeypatch.setattr(PredictRoute, "fast_path", fast)
    store = tmp_path / "logs/keys/api_keys.json"
    record, key = auth.create_key(store, "limited", ["predict"], rate_limit_per_second=0.001, rate_limit_burst=2)
    with TestClient(create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)) as client:
        statuses = [client.post("/v1/predict", json={"text": "ok"}, headers={"Authorization": f"Bearer {key}"})
                    for _ in range(3)]
        assert [r.status_code for r in statuses] == [200, 200, 429] and statuses[2].headers["retry-after"]
    engine = connect(f"sqlite:///{tmp_path / 'predictions.db'}", tmp_path)
    with engine.connect() as connection:
        assert set(connection.execute(select(predictions.c.key_id)).scalars()) == {record.id}
    engine.dispose()


def test_a_dependency_override_takes_fastapis_path(small_predictor, tmp_path, keys, monkeypatch):  # noqa: F811
    """Overrides (a test's, say) are FastAPI's business: with any, every request goes its way."""
    called = []

    async def counting_principal(request):
        called.append(request)
        return await principal(request)

    principal = predict_route.predict_principal
    monkeypatch.setattr(predict_route, "predict_principal", counting_principal)
    app = create_app(serve_settings(tmp_path), lambda: small_predictor, tmp_path)
    app.dependency_overrides[serving_state] = lambda: app.state
    with TestClient(app) as client:
        response = client.post("/v1/predict", json={"text": "great"}, headers={"Authorization": f"Bearer {keys['predict']}"})
        assert response.status_code == 200 and not called
        app.dependency_overrides.clear()
        response = client.post("/v1/predict", json={"text": "great"}, headers={"Authorization": f"Bearer {keys['predict']}"})
        assert response.status_code == 200 and called
