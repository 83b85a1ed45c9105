"""The REST API (FastAPI): ``POST /v1/predict``, ``GET /v1/model``, health, readiness, metrics.

Client input never produces a 500: a body over ``serve.max_body_bytes`` or more than
``serve.max_texts_per_request`` texts is a 413, anything malformed a 422, each with a JSON body
naming the field. The model is verified and loaded once per worker at start-up (lifespan).
"""

import gc
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiment_pipeline.core.config import MonitorConfig, ServeConfig
from sentiment_pipeline.dashboard.page import load_evaluation, read_live, read_monitor
from sentiment_pipeline.dashboard.page import render as render_dashboard
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import LogSettings, PredictionLog, connect, now
from sentiment_pipeline.serving.batching import MicroBatcher

log = logging.getLogger(__name__)

PROJECT_ENV = "SENTIMENT_SERVE_PROJECT"  # where `serve` tells its workers to load the model from


# ------------------------------------------------------------------ request and response models
class PredictRequest(BaseModel):
    """One text (``text``) or several (``texts``), not both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "@united thanks, the crew was great!"},
        {"texts": ["lost my bag again", "what time does boarding start?"]},
    ]})

    text: str | None = Field(None, description="A single raw text, as users wrote it.")
    texts: list[str] | None = Field(None, description="Several raw texts, predicted together.")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> "PredictRequest":
        given = {"text", "texts"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError("give exactly one of 'text' or 'texts'")
        if getattr(self, given.pop()) is None:
            raise ValueError("'text' must be a string and 'texts' a list of strings, not null")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' must hold at least one text")
        for i, text in enumerate(self.all_texts):
            where = "text" if self.text is not None else f"texts[{i}]"
            if "\x00" in text:  # PostgreSQL's text type cannot hold it, nor can a tweet
                raise ValueError(f"{where} contains a NUL character (\\u0000)")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate such as "\ud800" in the JSON
                raise ValueError(f"{where} is not valid Unicode (a lone surrogate escape)") from None
        return self

    @property
    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Unique id of this prediction (for feedback).")
    label: str
    confidence: float = Field(description="The probability the model gave its label.")
    probabilities: dict[str, float] = Field(description="Probability per class.")
    model_version: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "3f1c2d6e9a7b4c1e8d5f0a2b6c9e1d4f", "model_version": "f7c82c3f755d",
        "predictions": [{"prediction_id": "9b2e6f0c1a3d4e5f8a7b6c5d4e3f2a1b", "label": "positive",
                         "confidence": 0.93, "probabilities": {"negative": 0.03, "neutral": 0.04,
                                                               "positive": 0.93},
                         "model_version": "f7c82c3f755d"}]}]})

    request_id: str
    model_version: str
    predictions: list[PredictionOut]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prediction_id": "9b2e6f0c1a3d4e5f8a7b6c5d4e3f2a1b", "label": "neutral"}]})

    prediction_id: str = Field(min_length=1, max_length=32, description="From a /v1/predict answer.")
    label: str = Field(description="The correct label, one of the model's classes.")


class FeedbackResponse(BaseModel):
    prediction_id: str
    label: str
    status: str


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: str
    details: list[ErrorDetail] = []


class Health(BaseModel):
    status: str


ERRORS = {413: {"model": ErrorResponse, "description": "Body or text count over the limits"},
          422: {"model": ErrorResponse, "description": "Malformed request (the field is named)"}}


def json_response(content: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def prediction_ids(n: int) -> list[str]:
    """``n`` random 128-bit ids as 32 hex digits (what ``uuid4().hex`` looks like), from one
    ``os.urandom`` call rather than one per prediction."""
    digits = os.urandom(16 * n).hex()
    return [digits[i:i + 32] for i in range(0, 32 * n, 32)]


def _error(status: int, error: str, details: list[tuple[str, str]] = ()) -> JSONResponse:
    body = ErrorResponse(error=error, details=[ErrorDetail(field=f, message=m) for f, m in details])
    return JSONResponse(status_code=status, content=body.model_dump())


# ------------------------------------------------------------------ metrics
class ServiceMetrics:
    """Prometheus metrics of one app (its own registry: no process-global state)."""

    def __init__(self, classes: list[str]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sentiment_requests", "HTTP requests", ["method", "path", "status"],
                                registry=self.registry)
        self.latency = Histogram("sentiment_request_seconds", "Request latency", ["path"],
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.registry)
        self.predictions = Counter("sentiment_predictions", "Predictions per class", ["label"],
                                   registry=self.registry)
        self.confidence = Histogram("sentiment_prediction_confidence", "Confidence of predictions",
                                    buckets=tuple(i / 10 for i in range(1, 11)), registry=self.registry)
        # every class shows up, at 0, before its first prediction
        self._per_class = {label: self.predictions.labels(label=label) for label in classes}

    def observe_prediction(self, label: str, confidence: float) -> None:
        self._per_class[label].inc()
        self.confidence.observe(confidence)


# ------------------------------------------------------------------ body size limit (ASGI)
class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with a 413 before they are parsed: by the declared
    Content-Length, or, for a body sent without one, after reading at most ``max_bytes + 1``."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await _body_too_large(self.max_bytes)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # Chunked: buffer (bounded), then replay the body to the app.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _body_too_large(self.max_bytes)(scope, receive, send)
                return
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count requests by route and status and time them (plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` costs more per request than the model call)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_with_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                path = getattr(scope.get("route"), "path", "unmatched")
                metrics.requests.labels(scope["method"], path, str(status)).inc()
                metrics.latency.labels(path).observe(time.perf_counter() - started)


def _body_too_large(max_bytes: int) -> JSONResponse:
    return _error(413, f"request body over serve.max_body_bytes={max_bytes}",
                  [("body", "send less, or split the texts over several requests")])


# ------------------------------------------------------------------ the app
def _field(location: tuple) -> str:
    parts = [str(p) for p in location if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def tighten_schema(schema: dict, settings: ServeConfig, classes: list[str]) -> None:
    """Say in the OpenAPI schema what the server enforces, so that a client (or schemathesis)
    generating schema-valid requests gets 2xx: exactly one of text/texts, the size limits, the
    model's classes as feedback labels. Known only once the settings and the model are."""
    schemas = schema["components"]["schemas"]
    # no NUL: the prediction log (PostgreSQL's text type) cannot store it, so it is a 422
    text = {"type": "string", "maxLength": settings.max_chars_per_text, "pattern": "^[^\\u0000]*$"}
    predict = schemas["PredictRequest"]
    predict["properties"]["text"] = {**text, "description": predict["properties"]["text"].get("description", "")}
    predict["properties"]["texts"] = {"type": "array", "items": text, "minItems": 1,
                                      "maxItems": settings.max_texts_per_request,
                                      "description": predict["properties"]["texts"].get("description", "")}
    predict["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]
    predict["additionalProperties"] = False
    schemas["FeedbackRequest"]["properties"]["label"]["enum"] = list(classes)


# Dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread,
# two thread hops per request that cost more than the model call.
async def predictor_of(request: Request) -> Predictor:
    """The app's predictor, loaded at start-up (a FastAPI dependency)."""
    return request.app.state.predictor


async def prediction_log_of(request: Request) -> PredictionLog:
    return request.app.state.prediction_log


def create_app(settings: ServeConfig, load_predictor: Callable[[], Predictor],
               root: Path = Path("."), monitor_file: Path | None = None) -> FastAPI:
    """The API around the predictor ``load_predictor`` returns (called once, at start-up),
    logging to ``settings.database_url`` (a relative SQLite path is under ``root``); the
    dashboard shows the evaluation files under ``root`` and the monitor result ``monitor_file``
    (default: ``monitor.output_dir``'s monitor.json)."""
    monitor_file = monitor_file or root / MonitorConfig().output_dir / "monitor.json"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = load_predictor()
        engine = await run_in_threadpool(connect, settings.database_url, root)
        prediction_log = PredictionLog(engine, LogSettings(
            log_text=settings.log_text, queue_size=settings.log_queue_size,
            batch_size=settings.log_batch_size))
        prediction_log.start()
        batcher = MicroBatcher(predictor, max_batch=settings.batch_max_texts,
                               max_wait_ms=settings.batch_wait_ms)
        batcher.start()
        app.state.predictor, app.state.prediction_log, app.state.batcher = predictor, prediction_log, batcher
        app.state.metrics = ServiceMetrics(predictor.classes)
        app.state.evaluation = load_evaluation(root, predictor.classes)
        tighten_schema(app.openapi(), settings, predictor.classes)
        # The model's objects (vocabulary, arrays) live as long as the process: moved out of the
        # garbage collector's generations, full collections no longer walk them (pauses of tens
        # of milliseconds under load otherwise).
        gc.collect()
        gc.freeze()
        log.info("serving model %s (%s); prediction log %s", predictor.version,
                 predictor.metadata.get("family"), engine.url.render_as_string(hide_password=True))
        yield
        log.info("shutting down: draining the prediction log")
        await batcher.close()
        await prediction_log.close()

    app = FastAPI(title="Sentiment pipeline", version="1", lifespan=lifespan,
                  description="Predictions of the model the DVC pipeline selected and evaluated.")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [("body", f"not valid JSON (at character {e['loc'][-1]})") if e.get("type") == "json_invalid"
                   else (_field(tuple(e.get("loc", ()))), e.get("msg", "invalid")) for e in exc.errors()]
        return _error(422, "invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": not JSON text at all
            return _error(422, "invalid request", [("body", "not a JSON document in UTF-8")])
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error")

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(body: PredictRequest, request: Request,
                      predictor: Annotated[Predictor, Depends(predictor_of)],
                      prediction_log: Annotated[PredictionLog, Depends(prediction_log_of)],
                      ) -> Response:
        """Label, confidence and class probabilities for one text or a list of texts; each
        prediction is logged with its id (see /v1/feedback)."""
        started = time.perf_counter()
        texts = body.all_texts
        if len(texts) > settings.max_texts_per_request:
            return _error(413, f"{len(texts)} texts, more than serve.max_texts_per_request="
                               f"{settings.max_texts_per_request}", [("texts", "split them over several requests")])
        too_long = [(("text" if body.text is not None else f"texts[{i}]"),
                     f"{len(t)} characters, more than serve.max_chars_per_text={settings.max_chars_per_text}")
                    for i, t in enumerate(texts) if len(t) > settings.max_chars_per_text]
        if too_long:
            return _error(422, "text too long", too_long)
        if len(texts) < settings.batch_max_texts:  # small requests share model calls
            result = await request.app.state.batcher.predict(texts)
        else:
            result = predictor.predict(texts)  # on the loop's thread, as the micro-batcher does
        metrics: ServiceMetrics = request.app.state.metrics
        version = predictor.version
        request_id = (request.headers.get("x-request-id") or uuid.uuid4().hex)[:128]
        latency_ms = (time.perf_counter() - started) * 1000
        out, rows = [], []
        classes, created_at = result.classes, now()
        ids = prediction_ids(len(result))
        confidences, lengths = result.confidence.tolist(), result.cleaned_length.tolist()
        for i, (label, probabilities) in enumerate(zip(result.labels, result.probabilities.tolist(), strict=True)):
            probabilities = dict(zip(classes, probabilities, strict=True))
            metrics.observe_prediction(label, confidences[i])
            out.append({"prediction_id": ids[i], "label": label, "confidence": confidences[i],
                        "probabilities": probabilities, "model_version": version})
            rows.append(prediction_log.row(
                prediction_id=ids[i], request_id=request_id, text=texts[i], cleaned_length=lengths[i],
                label=label, confidence=confidences[i], probabilities=probabilities,
                model_version=version, latency_ms=latency_ms, created_at=created_at))
        await prediction_log.record(rows)
        # Built as PredictResponse documents it (response_model), serialised directly: FastAPI's
        # re-validation of a returned model would cost as much as the prediction.
        return json_response({"request_id": request_id, "model_version": version, "predictions": out})

    @app.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
              responses={404: {"model": ErrorResponse}, 422: ERRORS[422]})
    async def add_feedback(body: FeedbackRequest,
                           predictor: Annotated[Predictor, Depends(predictor_of)],
                           prediction_log: Annotated[PredictionLog, Depends(prediction_log_of)],
                           ) -> FeedbackResponse | JSONResponse:
        """Store the correct label of an earlier prediction (see `sentiment-pipeline export-feedback`)."""
        if body.label not in predictor.classes:
            return _error(422, "unknown label", [("label", f"{body.label!r} is not one of {predictor.classes}")])
        await prediction_log.flush()  # the prediction may still be on its way to the database
        if not await run_in_threadpool(prediction_log.prediction_exists, body.prediction_id):
            return _error(404, "unknown prediction", [("prediction_id", f"no prediction {body.prediction_id!r} in the log")])
        await run_in_threadpool(prediction_log.add_feedback, body.prediction_id, body.label)
        return FeedbackResponse(prediction_id=body.prediction_id, label=body.label, status="recorded")

    @app.get("/v1/model")
    def model(predictor: Annotated[Predictor, Depends(predictor_of)]) -> dict:
        """The served model: family, params, CV and test scores, classes, hashes, git revision."""
        return predictor.metadata

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    def readyz(request: Request) -> Health | JSONResponse:
        """The model is loaded and verified: the instance can take traffic."""
        if getattr(request.app.state, "predictor", None) is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return Health(status="ready")

    @app.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
    async def dashboard(request: Request,
                        predictor: Annotated[Predictor, Depends(predictor_of)],
                        prediction_log: Annotated[PredictionLog, Depends(prediction_log_of)]) -> HTMLResponse:
        """The model card, its evaluation, live traffic, the last monitor run and a text box."""
        def gather():
            try:
                live = read_live(prediction_log.engine, predictor.classes, predictor.version)
            except SQLAlchemyError as exc:
                log.warning("dashboard: the prediction log is not readable: %s", exc)
                live = None
            return live, read_monitor(monitor_file)

        live, monitor_result = await run_in_threadpool(gather)
        return HTMLResponse(render_dashboard(predictor.metadata, request.app.state.evaluation, live, monitor_result,
                                             str(monitor_file), settings.max_chars_per_text))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_environment():
    """uvicorn's factory in each worker: project root and limits from the environment that
    ``sentiment-pipeline serve`` set up."""
    from sentiment_pipeline.core.config import serve_settings

    root = Path(os.environ.get(PROJECT_ENV, "."))
    params, settings = serve_settings(root)
    return create_app(settings, lambda: Predictor.load(root), root,
                      monitor_file=root / params.monitor.output_dir / "monitor.json")
