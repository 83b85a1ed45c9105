"""``POST /v1/predict``: label, confidence and probabilities, each prediction logged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from sentiment_pipeline.inference.explain import explain
from sentiment_pipeline.predlog.prediction_log import new_id, new_ids, now
from sentiment_pipeline.serving.auth import AUTH_RESPONSES
from sentiment_pipeline.serving.deps import PredictPrincipal, ServingDep, predict_principal
from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.schemas import ERRORS, PredictRequest, PredictResponse


class PredictRoute(APIRoute):
    """FastAPI's route, with a fast path for a well-formed request.

    FastAPI resolves a request's dependencies in general-purpose Python: for this route (the
    body, the state, the key through three security schemes) that was 17 % of a worker's time
    with the GIL under wrk load (py-spy --gil), more than the model. A request whose
    Content-Type is ``application/json`` and whose body is JSON ``PredictRequest`` accepts is
    handled here: the body validated as FastAPI does it (``json.loads``, then the model in
    Python mode), the key checked by the same function with the same schemes, the endpoint
    called. Anything else (another Content-Type, a body that is not JSON or not valid, a
    dependency override) goes through FastAPI's own handler, so every error is FastAPI's, as
    before. The schema is the endpoint's signature, as before. What the fast path skips is
    FastAPI's telemetry of the dependencies (OpenTelemetry spans), which this app does not use.
    tests/test_predict_route.py checks that both paths answer alike."""

    fast_path = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        endpoint = self.endpoint
        if self.path != "/v1/predict" or self.dependencies:
            return full  # the fast path knows this endpoint's parameters only, and no extra dependency

        async def handler(request: Request) -> Response:
            if not self.fast_path or request.app.dependency_overrides or \
                    request.headers.get("content-type") != "application/json":
                return await full(request)
            try:
                body = PredictRequest.model_validate(json.loads(await request.body()))
            except Exception:  # noqa: BLE001 - FastAPI's handler gives the error its usual answer
                return await full(request)
            principal = await predict_principal(request)
            return await endpoint(body, request, request.app.state, principal)

        return handler


router = APIRouter(tags=["predictions"], responses=AUTH_RESPONSES,  # every route needs a key
                   route_class=PredictRoute)

# Requests of batch_max_texts texts or more are predicted here, off the event loop: tens of
# milliseconds of model on the loop would hold up /healthz and every small request behind them.
# One thread: such requests take turns rather than fight over the GIL (and with the loop) together.
# Explained requests too: each text is predicted once per distinct word (inference/explain.py).
LARGE_REQUESTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-large")


def json_response(content: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


@router.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
async def predict(body: PredictRequest, request: Request, state: ServingDep, principal: PredictPrincipal) -> Response:
    """Label, confidence and class probabilities for one text or a list of texts; each
    prediction is logged with its id (see /v1/feedback)."""
    started = time.perf_counter()
    predictor, prediction_log, settings = state.predictor, state.prediction_log, state.settings
    batcher, metrics = state.batcher, state.metrics
    if not prediction_log.accepting:  # serve.log_overflow: reject, and the spool is full
        return error_response(503, "the prediction log is full (its database has been away too long)",
                              [("service", "retry later; the operator is told by /readyz and the metrics")],
                              headers={"Retry-After": "30"})
    texts = body.all_texts
    if len(texts) > settings.max_texts_per_request:
        return error_response(413, f"{len(texts)} texts, more than serve.max_texts_per_request="
                                   f"{settings.max_texts_per_request}", [("texts", "split them over several requests")])
    too_long = [(("text" if body.text is not None else f"texts[{i}]"),
                 f"{len(t)} characters, more than serve.max_chars_per_text={settings.max_chars_per_text}")
                for i, t in enumerate(texts) if len(t) > settings.max_chars_per_text]
    if too_long:
        return error_response(422, "text too long", too_long)
    explanations = None
    if body.explain is not None:
        if len(texts) > settings.explain_max_texts:
            return error_response(422, "too many texts to explain", [(
                "explain", f"{len(texts)} texts, more than serve.explain_max_texts={settings.explain_max_texts} "
                           "can be explained in one request; split them, or drop explain")])
        result, explanations = await asyncio.get_running_loop().run_in_executor(
            LARGE_REQUESTS, explain, predictor, texts, body.explain, settings.explain_max_words)
    elif len(texts) < settings.batch_max_texts:  # small requests share model calls
        result = await batcher.predict(texts)
    else:
        result = await asyncio.get_running_loop().run_in_executor(LARGE_REQUESTS, predictor.predict, texts)
    version = predictor.version
    request_id = (request.headers.get("x-request-id") or new_id())[:128]
    latency_ms = (time.perf_counter() - started) * 1000
    out, rows = [], []
    classes, created_at = result.classes, now()
    ids = new_ids(len(result))
    confidences, lengths = result.confidence.tolist(), result.cleaned_length.tolist()
    for i, (label, row) in enumerate(zip(result.labels, result.probabilities.tolist(), strict=True)):
        probabilities = dict(zip(classes, row, strict=True))
        metrics.observe_prediction(label, confidences[i])
        out.append({"prediction_id": ids[i], "label": label, "confidence": confidences[i],
                    "probabilities": probabilities, "model_version": version})
        if explanations is not None:
            out[-1]["explanation"] = [c.as_dict() for c in explanations[i]]
        rows.append(prediction_log.row(
            prediction_id=ids[i], request_id=request_id, text=texts[i], cleaned_length=lengths[i],
            label=label, confidence=confidences[i], probabilities=probabilities,
            model_version=version, latency_ms=latency_ms, created_at=created_at, key_id=principal.key_id))
    await prediction_log.record(rows)
    # Built as PredictResponse documents it (response_model), serialised directly: FastAPI's
    # re-validation of a returned model would cost as much as the prediction.
    return json_response({"request_id": request_id, "model_version": version, "predictions": out})
