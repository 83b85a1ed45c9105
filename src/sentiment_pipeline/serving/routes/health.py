"""``/healthz`` (the process is up) and ``/readyz`` (it can take traffic)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sentiment_pipeline.serving.schemas import Health

router = APIRouter(tags=["health"])


# Coroutines, answered on the event loop: a plain def would wait for the thread pool (and the GIL) under load.
@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> Health | JSONResponse:
    """The model is loaded and verified, and the prediction log can take rows: the instance can
    take traffic."""
    if getattr(request.app.state, "predictor", None) is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    if request.app.state.prediction_log.over_budget:  # the database away too long: stop taking traffic
        return JSONResponse(status_code=503, content={"status": "prediction log spool full"})
    return Health(status="ready")
