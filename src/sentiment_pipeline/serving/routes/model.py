"""``GET /v1/model``: what is served."""

from __future__ import annotations

from fastapi import APIRouter

from sentiment_pipeline.serving.auth import AUTH_RESPONSES
from sentiment_pipeline.serving.deps import KeyPrincipal, PredictorDep

router = APIRouter(tags=["model"], responses=AUTH_RESPONSES)  # every route needs a key


@router.get("/v1/model")
async def model(predictor: PredictorDep, _: KeyPrincipal) -> dict:
    """The served model: family, params, CV and test scores, classes, hashes, git revision (any
    valid API key)."""
    return predictor.metadata
