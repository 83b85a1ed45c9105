"""``GET /v1/model``: what is served."""

from __future__ import annotations

from fastapi import APIRouter

from sentiment_pipeline.serving.deps import PredictorDep

router = APIRouter(tags=["model"])


@router.get("/v1/model")
async def model(predictor: PredictorDep) -> dict:
    """The served model: family, params, CV and test scores, classes, hashes, git revision."""
    return predictor.metadata
