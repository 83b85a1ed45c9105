"""The app factory: ``create_app`` wires the routers, the middleware and the error handlers
around a predictor that the lifespan loads once per worker.

Client input never produces a 500: a body over ``serve.max_body_bytes`` or more than
``serve.max_texts_per_request`` texts is a 413, anything malformed a 422, each with a JSON body
naming the field (see ``errors``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from sentiment_pipeline.core.config import MonitorConfig, ServeConfig
from sentiment_pipeline.dashboard.page import load_evaluation
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import LogSettings, PredictionLog, connect
from sentiment_pipeline.serving import auth
from sentiment_pipeline.serving.batching import MicroBatcher
from sentiment_pipeline.serving.errors import add_exception_handlers
from sentiment_pipeline.serving.metrics import ServiceMetrics
from sentiment_pipeline.serving.middleware import Admission, BodySizeLimit, RequestMetrics
from sentiment_pipeline.serving.reload import ModelReloader
from sentiment_pipeline.serving.routes import admin, dashboard, feedback, health, metrics, model, predict, review
from sentiment_pipeline.serving.schemas import tighten_schema

log = logging.getLogger(__name__)

PROJECT_ENV = "SENTIMENT_SERVE_PROJECT"  # where `serve` tells its workers to load the model from


def create_app(settings: ServeConfig, load_predictor: Callable[[], Predictor],
               root: Path = Path("."), monitor_file: Path | None = None) -> FastAPI:
    """The API around the predictor ``load_predictor`` returns (called once, at start-up),
    logging to ``settings.database_url`` (a relative SQLite path is under ``root``); the
    dashboard shows the evaluation files under ``root`` and the monitor result ``monitor_file``
    (default: ``monitor.output_dir``'s monitor.json)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor = load_predictor()
        engine = await run_in_threadpool(connect, settings.database_url, root)
        spool_dir = Path(settings.spool_dir)
        prediction_log = PredictionLog(engine, LogSettings(
            log_text=settings.log_text, queue_size=settings.log_queue_size, batch_size=settings.log_batch_size,
            flush_seconds=settings.log_flush_ms / 1000,
            spool_dir=spool_dir if spool_dir.is_absolute() else root / spool_dir,
            spool_max_bytes=settings.spool_max_bytes, overflow=settings.log_overflow,
            drain_seconds=min(settings.graceful_shutdown_seconds, 5.0), retention_days=settings.retention_days))
        prediction_log.start()
        batcher = MicroBatcher(predictor, max_batch=settings.batch_max_texts, max_wait_ms=settings.batch_wait_ms)
        batcher.start()
        app.state.prediction_log, app.state.batcher = prediction_log, batcher
        app.state.metrics = ServiceMetrics(predictor.classes)
        app.state.evaluation = load_evaluation(root, predictor.classes)
        tighten_schema(app.openapi(), settings, predictor.classes)
        app.state.reloader = reloader = ModelReloader(app, load_predictor, settings, root)
        reloader.install_signal_handler()  # SIGHUP: reload (one worker; with several, uvicorn restarts them)
        exporter = asyncio.create_task(_export_log_state(app.state.metrics, prediction_log), name="log-metrics")
        app.state.predictor = predictor  # last: /readyz is ready once it is set
        log.info("serving model %s (%s); prediction log %s", predictor.version,
                 predictor.metadata.get("family"), engine.url.render_as_string(hide_password=True))
        del predictor, batcher  # app.state holds them: a reload can then free this model
        # The model's objects (vocabulary, arrays) live until a reload: moved out of the garbage
        # collector's generations, full collections no longer walk them (pauses of tens of
        # milliseconds under load otherwise). A reload does the same for its model (reload.py).
        gc.collect()
        gc.freeze()
        yield
        log.info("shutting down: draining the prediction log")
        exporter.cancel()
        await app.state.batcher.close()  # the current one: a reload may have replaced it
        await prediction_log.close()

    app = FastAPI(title="Sentiment pipeline", version="1", lifespan=lifespan,
                  description="Predictions of the model the DVC pipeline selected and evaluated.")
    app.state.settings = settings
    app.state.monitor_file = monitor_file or root / MonitorConfig().output_dir / "monitor.json"
    add_exception_handlers(app)
    auth.install(app, settings, root)  # API keys, scopes and rate limits (serve.auth)
    for module in (predict, feedback, model, admin, review, health, dashboard, metrics):
        app.include_router(module.router)
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # outermost: a request over serve.max_inflight is refused before anything else is done for it
    app.add_middleware(Admission, max_inflight=settings.max_inflight, wait_ms=settings.admission_wait_ms,
                       retry_after_seconds=settings.retry_after_seconds)
    return app


async def _export_log_state(metrics: ServiceMetrics, prediction_log: PredictionLog) -> None:
    """The prediction log's spool and database state into the metrics, every second."""
    while True:
        metrics.observe_log(prediction_log)
        await asyncio.sleep(1.0)


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker: project root and limits from the environment that
    ``sentiment-pipeline serve`` set up."""
    from sentiment_pipeline.core.config import serve_settings

    root = Path(os.environ.get(PROJECT_ENV, "."))
    params, settings = serve_settings(root)
    return create_app(settings, lambda: Predictor.load(root), root,
                      monitor_file=root / params.monitor.output_dir / "monitor.json")
