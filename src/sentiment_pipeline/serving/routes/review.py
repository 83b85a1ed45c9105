"""``GET /v1/review``: the logged predictions that most need a human label (admin scope: the
answer holds logged texts, which a ``predict`` or ``feedback`` key must not read back)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.predlog.review import NotAnEnsemble, Policy, review_queue
from sentiment_pipeline.serving.auth import AUTH_RESPONSES
from sentiment_pipeline.serving.deps import AdminPrincipal, PredictionLogDep, PredictorDep, SettingsDep
from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.schemas import ERRORS, ErrorResponse

log = logging.getLogger(__name__)
router = APIRouter(tags=["review"], responses=AUTH_RESPONSES)

MAX_LIMIT = 1000  # a page a person can work through; the window (serve.review_window_rows) bounds the work


class ReviewItemOut(BaseModel):
    prediction_id: str
    created_at: datetime
    text: str
    label: str = Field(description="The model's label.")
    confidence: float = Field(description="The probability the model gave its label.")
    margin: float = Field(description="Top-1 minus top-2 class probability.")
    probabilities: dict[str, float]
    model_version: str
    disagreement: float | None = Field(None, description="disagreement: the share of the ensemble's members not "
                                                         "in the largest group voting alike.")
    member_labels: dict[str, str] | None = Field(None, description="disagreement: each member's label.")


class ReviewResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policy": "margin", "model_version": "f7c82c3f755d", "window_rows": 5000, "candidates": 4210,
        "other_versions": 0, "items": [{
            "prediction_id": "019afa0c1a3d7e5f8a7b6c5d4e3f2a1b", "created_at": "2026-12-07T08:00:00Z",
            "text": "well that was a flight", "label": "neutral", "confidence": 0.41, "margin": 0.02,
            "probabilities": {"negative": 0.39, "neutral": 0.41, "positive": 0.20},
            "model_version": "f7c82c3f755d"}]}]})

    policy: str
    model_version: str = Field(description="The served model's version.")
    window_rows: int = Field(description="The window: at most this many of the newest logged predictions were "
                                         "read (serve.review_window_rows; fewer when the log holds fewer).")
    candidates: int = Field(description="Of those, unlabelled with their text logged (disagreement: of the "
                                        "served version).")
    other_versions: int = Field(0, description="disagreement: unlabelled rows of another model version, "
                                               "left out (their members are not served).")
    items: list[ReviewItemOut]


@router.get("/v1/review", response_model=ReviewResponse,
            responses={422: ERRORS[422], 503: {"model": ErrorResponse, "description": "The prediction log is "
                                                                                      "not readable now"}})
async def review(predictor: PredictorDep, prediction_log: PredictionLogDep, settings: SettingsDep,
                 _: AdminPrincipal,
                 policy: Annotated[Policy, Query(description="low_confidence: lowest confidence first; margin: "
                                                            "smallest top-1 minus top-2 first; disagreement: "
                                                            "the ensemble's members most divided first.")]
                 = "low_confidence",
                 limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50) -> ReviewResponse | JSONResponse:
    """Unlabelled logged predictions (with their text) of the newest `serve.review_window_rows`,
    ordered by `policy`; those with feedback are left out. Export them for labelling with
    `sentiment-pipeline export-review`."""
    try:
        queue = await run_in_threadpool(review_queue, prediction_log.engine, policy, limit,
                                        settings.review_window_rows, predictor)
    except NotAnEnsemble as exc:
        return error_response(422, "no ensemble to disagree", [("query.policy", str(exc))])
    except SQLAlchemyError as exc:
        log.warning("review: the prediction log is not readable: %s", str(exc).splitlines()[0])
        return error_response(503, "the prediction log is not readable now", headers={"Retry-After": "5"})
    return ReviewResponse(policy=queue.policy, model_version=predictor.version, window_rows=queue.window_rows,
                          candidates=queue.candidates, other_versions=queue.other_versions,
                          items=[ReviewItemOut(**vars(item)) for item in queue.items])
