"""``POST /v1/feedback``: the correct label of an earlier prediction."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from sentiment_pipeline.serving.deps import PredictionLogDep, PredictorDep
from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.schemas import ERRORS, ErrorResponse, FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", response_model=FeedbackResponse, status_code=201,
             responses={404: {"model": ErrorResponse}, 422: ERRORS[422]})
async def add_feedback(body: FeedbackRequest, predictor: PredictorDep,
                       prediction_log: PredictionLogDep) -> FeedbackResponse | JSONResponse:
    """Store the correct label of an earlier prediction (see `sentiment-pipeline export-feedback`)."""
    if body.label not in predictor.classes:
        return error_response(422, "unknown label", [("label", f"{body.label!r} is not one of {predictor.classes}")])
    await prediction_log.flush()  # the prediction may still be on its way to the database
    if not await run_in_threadpool(prediction_log.prediction_exists, body.prediction_id):
        return error_response(404, "unknown prediction",
                              [("prediction_id", f"no prediction {body.prediction_id!r} in the log")])
    await run_in_threadpool(prediction_log.add_feedback, body.prediction_id, body.label)
    return FeedbackResponse(prediction_id=body.prediction_id, label=body.label, status="recorded")
