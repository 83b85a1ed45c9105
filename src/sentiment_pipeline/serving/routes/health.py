"""``/healthz`` (the process is up) and ``/readyz`` (it can take traffic)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sentiment_pipeline.serving.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> Health | JSONResponse:
    """The model is loaded and verified: the instance can take traffic."""
    if getattr(request.app.state, "predictor", None) is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    return Health(status="ready")
