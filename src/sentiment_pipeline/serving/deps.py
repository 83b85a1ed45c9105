"""What the routes depend on, as typed aliases (``predictor: PredictorDep``).

Everything is created once per worker by the app's lifespan and kept on ``app.state``. The
dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, two
thread hops per request that cost more than the model call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.dashboard.page import Evaluation
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import PredictionLog
from sentiment_pipeline.serving.batching import MicroBatcher
from sentiment_pipeline.serving.metrics import ServiceMetrics


async def predictor_of(request: Request) -> Predictor:
    """The app's predictor, loaded and verified at start-up."""
    return request.app.state.predictor


async def prediction_log_of(request: Request) -> PredictionLog:
    return request.app.state.prediction_log


async def settings_of(request: Request) -> ServeConfig:
    return request.app.state.settings


async def batcher_of(request: Request) -> MicroBatcher:
    return request.app.state.batcher


async def metrics_of(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def evaluation_of(request: Request) -> Evaluation:
    return request.app.state.evaluation


async def monitor_file_of(request: Request) -> Path:
    return request.app.state.monitor_file


PredictorDep = Annotated[Predictor, Depends(predictor_of)]
PredictionLogDep = Annotated[PredictionLog, Depends(prediction_log_of)]
SettingsDep = Annotated[ServeConfig, Depends(settings_of)]
BatcherDep = Annotated[MicroBatcher, Depends(batcher_of)]
MetricsDep = Annotated[ServiceMetrics, Depends(metrics_of)]
EvaluationDep = Annotated[Evaluation, Depends(evaluation_of)]
MonitorFileDep = Annotated[Path, Depends(monitor_file_of)]
