"""``GET /dashboard``: the model card, its evaluation, live traffic, the last monitor run and a
text box (an HTML page, not part of the OpenAPI schema)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.dashboard.page import read_live, read_monitor
from sentiment_pipeline.dashboard.page import render as render_dashboard
from sentiment_pipeline.serving.deps import EvaluationDep, MonitorFileDep, PredictionLogDep, PredictorDep, SettingsDep

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
async def dashboard(predictor: PredictorDep, prediction_log: PredictionLogDep, settings: SettingsDep,
                    evaluation: EvaluationDep, monitor_file: MonitorFileDep) -> HTMLResponse:
    def gather():
        try:
            live = read_live(prediction_log.engine, predictor.classes, predictor.version)
        except SQLAlchemyError as exc:
            log.warning("dashboard: the prediction log is not readable: %s", exc)
            live = None
        return live, read_monitor(monitor_file)

    live, monitor_result = await run_in_threadpool(gather)
    return HTMLResponse(render_dashboard(predictor.metadata, evaluation, live, monitor_result,
                                         str(monitor_file), settings.max_chars_per_text))
