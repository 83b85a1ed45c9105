"""Every error the API answers is JSON (``ErrorResponse``) naming the field at fault; client
input gets a 4xx, never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentiment_pipeline.serving.schemas import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)


def error_response(status: int, error: str, details: list[tuple[str, str]] | tuple = (),
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=error, details=[ErrorDetail(field=f, message=m) for f, m in details])
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def field_name(location: tuple) -> str:
    """A pydantic error location as a client writes it: ``("body", "texts", 1)`` -> ``texts[1]``."""
    parts = [str(p) for p in location if p != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [("body", f"not valid JSON (at character {e['loc'][-1]})") if e.get("type") == "json_invalid"
               else (field_name(tuple(e.get("loc", ()))), e.get("msg", "invalid")) for e in exc.errors()]
    return error_response(422, "invalid request", details)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's "error parsing the body": not JSON text at all
        return error_response(422, "invalid request", [("body", "not a JSON document in UTF-8")])
    response = error_response(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error")


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
