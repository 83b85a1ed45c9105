"""``POST /v1/admin/reload``: serve the current ``models/final`` without a restart (admin scope)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sentiment_pipeline.core.errors import PipelineError
from sentiment_pipeline.serving.auth import AUTH_RESPONSES
from sentiment_pipeline.serving.deps import AdminPrincipal, SettingsDep
from sentiment_pipeline.serving.errors import error_response
from sentiment_pipeline.serving.reload import ModelReloader
from sentiment_pipeline.serving.schemas import ErrorResponse

router = APIRouter(tags=["admin"], responses=AUTH_RESPONSES)


class ReloadResponse(BaseModel):
    status: str  # "reloaded" (this worker), or "restarting" (every worker, one at a time)
    model_version: str | None = None
    previous_version: str | None = None


@router.post("/v1/admin/reload", response_model=ReloadResponse,
             responses={202: {"model": ReloadResponse, "description": "A rolling restart of the workers began"},
                        409: {"model": ErrorResponse, "description": "The new model failed verification; "
                                                                     "the old one keeps serving"}})
async def reload(request: Request, settings: SettingsDep, _: AdminPrincipal) -> ReloadResponse | JSONResponse:
    """Verify the current `models/final` against `dvc.lock`, warm it up and swap it in; requests in
    flight finish on the model they started with. With several workers, a rolling restart."""
    reloader: ModelReloader = request.app.state.reloader
    if settings.workers > 1:
        reloader.restart_workers()
        return JSONResponse(status_code=202, content=ReloadResponse(status="restarting").model_dump())
    try:
        previous, new = await reloader.reload()
    except PipelineError as exc:  # tampered, stale or missing: keep serving what was verified
        return error_response(409, "the new model was refused", [("models/final", str(exc))])
    return ReloadResponse(status="reloaded", model_version=new.version, previous_version=previous)
