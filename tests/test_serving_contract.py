"""The API's contract, in-process on a small model fitted here (fast tier: no ``dvc repro``):
what every route answers, every client error a named 4xx, and the OpenAPI schema saying what
the server enforces. The real pipeline's model behind a real socket: test_serving_api.py."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.serving.app import create_app
from sentiment_pipeline.serving.batching import MicroBatcher

LIMITS = ServeConfig(max_texts_per_request=3, max_chars_per_text=50, max_body_bytes=2048)


@pytest.fixture(scope="module")
def client(small_predictor, tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    settings = LIMITS.model_copy(update={"database_url": f"sqlite:///{root / 'predictions.db'}"})
    with TestClient(create_app(settings, lambda: small_predictor, root)) as test_client:
        yield test_client


def test_one_text_and_a_list(client, small_predictor):
    one = client.post("/v1/predict", json={"text": "@united thanks, great crew!"})
    assert one.status_code == 200
    body = one.json()
    [prediction] = body["predictions"]
    assert set(prediction["probabilities"]) == {"negative", "neutral", "positive"}
    assert prediction["confidence"] == prediction["probabilities"][prediction["label"]]
    assert prediction["model_version"] == body["model_version"] == "small0000000"
    texts = ["lost my bag", "great crew", "when is boarding?"]
    many = client.post("/v1/predict", json={"texts": texts}, headers={"X-Request-ID": "abc"}).json()
    assert many["request_id"] == "abc"
    expected = small_predictor.predict(texts)
    assert [p["label"] for p in many["predictions"]] == expected.labels
    assert [p["confidence"] for p in many["predictions"]] == expected.confidence.tolist()
    assert len({p["prediction_id"] for p in many["predictions"]}) == 3


@pytest.mark.parametrize("body, status, field", [
    ({"texts": ["a"] * 4}, 413, "texts"),
    ({"texts": ["ok", "x" * 60]}, 422, "texts[1]"),
    ({"text": "x" * 60}, 422, "text"),
    ({"text": 5}, 422, "text"),
    ({"texts": ["a", None]}, 422, "texts[1]"),
    ({}, 422, "body"),
    ({"text": None}, 422, "body"),
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
    latin1 = client.post("/v1/predict", content=b'{"text": "caf\xe9"}', headers={"content-type": "application/json"})
    assert latin1.status_code == 422 and latin1.json()["details"][0]["field"] == "body"


@pytest.mark.parametrize("text", ["\ud800", "bad\x00byte"])
def test_texts_the_log_cannot_store_are_a_422_naming_them(client, text):
    for body, where in (({"text": text}, "text"), ({"texts": ["fine", text]}, "texts[1]")):
        response = client.post("/v1/predict", content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert where in response.json()["details"][0]["message"]


def test_feedback_is_recorded_for_a_logged_prediction_only(client):
    [prediction] = client.post("/v1/predict", json={"text": "delayed again"}).json()["predictions"]
    recorded = client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"], "label": "negative"})
    assert recorded.status_code == 201 and recorded.json()["status"] == "recorded"
    unknown = client.post("/v1/feedback", json={"prediction_id": "0" * 32, "label": "negative"})
    assert unknown.status_code == 404 and unknown.json()["details"][0]["field"] == "prediction_id"
    wrong_label = client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"], "label": "angry"})
    assert wrong_label.status_code == 422 and wrong_label.json()["details"][0]["field"] == "label"
    too_long = client.post("/v1/feedback", json={"prediction_id": "0" * 33, "label": "negative"})
    assert too_long.status_code == 422 and too_long.json()["details"][0]["field"] == "prediction_id"


def test_unknown_paths_and_methods_are_json_errors(client):
    missing = client.get("/v2/predict")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong_method = client.get("/v1/predict")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


def test_model_health_readiness_metrics_and_dashboard(client):
    model = client.get("/v1/model").json()
    assert model["family"] == "linear_svm" and model["classes"] == ["negative", "neutral", "positive"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    client.post("/v1/predict", json={"text": "great"})
    metrics = client.get("/metrics").text
    assert 'sentiment_requests_total{method="POST",path="/v1/predict",status="200"}' in metrics
    assert "sentiment_request_seconds_bucket" in metrics and "sentiment_prediction_confidence_bucket" in metrics
    assert 'sentiment_predictions_total{label="neutral"}' in metrics
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200 and "small0000000" in dashboard.text


def test_readiness_waits_for_the_model(small_predictor, tmp_path):
    app = create_app(LIMITS, lambda: small_predictor, tmp_path)
    client = TestClient(app)  # not entered: the lifespan (model load) has not run
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json() == {"status": "loading"}


def test_the_openapi_schema_says_what_the_server_enforces(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/predict", "/v1/feedback", "/v1/model", "/v1/admin/reload", "/v1/review",
                                    "/healthz", "/readyz"}
    components = schema["components"]["schemas"]
    request = components["PredictRequest"]
    assert request["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert request["additionalProperties"] is False
    assert request["properties"]["text"]["maxLength"] == 50
    assert request["properties"]["texts"]["maxItems"] == 3 and request["properties"]["texts"]["minItems"] == 1
    assert components["FeedbackRequest"]["properties"]["label"]["enum"] == ["negative", "neutral", "positive"]
    responses = schema["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "413", "422"} <= set(responses)
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "examples" in str(request)


def test_micro_batching_gives_each_text_its_own_numbers(small_predictor):
    assert_micro_batching_is_exact(small_predictor)


def assert_micro_batching_is_exact(predictor) -> None:
    """Concurrent requests predicted together get exactly what they would get alone (also run
    on the pipeline's own model: test_serving_api.py)."""
    texts = [f"{word} flight number {i}" for i, word in enumerate(["awful", "great", "late", "ok"] * 10)]

    async def concurrently():
        batcher = MicroBatcher(predictor, max_batch=16, max_wait_ms=5)
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.predict([t]) for t in texts), batcher.predict(texts[:3]))
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
