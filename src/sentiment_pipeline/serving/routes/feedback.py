"""``POST /v1/feedback``: the correct label of an earlier prediction."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.serving.auth import AUTH_RESPONSES
from sentiment_pipeline.serving.deps import FeedbackPrincipal, PredictionLogDep, PredictorDep
from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.schemas import ERRORS, ErrorResponse, FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"], responses=AUTH_RESPONSES)  # every route needs a key

# How long the check "is this prediction in the database?" may take before the feedback is
# accepted unverified: the answer must come within a second even while the database is away.
LOOKUP_SECONDS = 0.5


@router.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
             responses={202: {"model": FeedbackResponse,
                              "description": "Accepted into the spool, not verified: the database is away"},
                        404: {"model": ErrorResponse}, 422: ERRORS[422]})
async def add_feedback(body: FeedbackRequest, predictor: PredictorDep,
                       prediction_log: PredictionLogDep, principal: FeedbackPrincipal) -> FeedbackResponse | JSONResponse:
    """Store the correct label of an earlier prediction (see `sentiment-pipeline export-feedback`).
    201 when the prediction was found; 202 when the database is unreachable and the label was
    spooled to be stored once it is back."""
    if body.label not in predictor.classes:
        return error_response(422, "unknown label", [("label", f"{body.label!r} is not one of {predictor.classes}")])
    known: bool | None = True if prediction_log.spooled(body.prediction_id) else None
    if known is None and prediction_log.database_up:
        try:
            known = await asyncio.wait_for(run_in_threadpool(prediction_log.prediction_exists, body.prediction_id),
                                           LOOKUP_SECONDS)
        except (TimeoutError, SQLAlchemyError):
            known = None  # cannot tell now: accept it, as while the database is known to be away
    if known is False:
        return error_response(404, "unknown prediction",
                              [("prediction_id", f"no prediction {body.prediction_id!r} in the log")])
    await prediction_log.record_feedback(body.prediction_id, body.label, key_id=principal.key_id)
    if known:
        return FeedbackResponse(prediction_id=body.prediction_id, label=body.label, status="recorded")
    return JSONResponse(status_code=202, content=FeedbackResponse(
        prediction_id=body.prediction_id, label=body.label, status="queued").model_dump())
