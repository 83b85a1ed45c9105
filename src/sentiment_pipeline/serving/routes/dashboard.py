"""``GET /dashboard``: the model card, its evaluation, live traffic, the last monitor run and a
text box (an HTML page, not part of the OpenAPI schema). It needs an ``admin`` key: sent as a
header (curl), or typed once into the login form, which keeps it in an HttpOnly, Secure,
SameSite=Strict cookie that this page and its text box's ``POST /v1/predict`` accept."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from sentiment_pipeline.dashboard.page import login_page, read_live, read_monitor, read_monitor_history
from sentiment_pipeline.dashboard.page import render as render_dashboard
from sentiment_pipeline.dashboard.review_panel import read_review
from sentiment_pipeline.serving.auth import DASHBOARD_COOKIE, DASHBOARD_COOKIE_SECONDS, AccessDenied
from sentiment_pipeline.serving.deps import (
    AccessDep,
    EvaluationDep,
    MonitorFileDep,
    PredictionLogDep,
    PredictorDep,
    PresentedKeyDep,
    SettingsDep,
)

log = logging.getLogger(__name__)
router = APIRouter()


def _login(denied: AccessDenied | None, status: int = 200) -> HTMLResponse:
    message = None if denied is None or denied.error == "missing API key" else f"{denied.error}: {denied.message}"
    headers = {} if denied is None else denied.headers
    return HTMLResponse(login_page(message), status_code=denied.status if denied else status, headers=headers)


@router.get("/dashboard", include_in_schema=False, response_class=HTMLResponse)
async def dashboard(predictor: PredictorDep, prediction_log: PredictionLogDep, settings: SettingsDep,
                    evaluation: EvaluationDep, monitor_file: MonitorFileDep, access: AccessDep,
                    key: PresentedKeyDep, request: Request) -> HTMLResponse:
    try:
        access.check(key, ["admin"])
    except AccessDenied as denied:  # a browser gets the login form (with the same status)
        return _login(denied)

    def gather():
        try:
            live = read_live(prediction_log.engine, predictor.classes, predictor.version)
        except SQLAlchemyError as exc:
            log.warning("dashboard: the prediction log is not readable: %s", exc)
            live = None
        return live, read_monitor(monitor_file), read_review(prediction_log.engine, settings.review_window_rows)

    live, monitor_result, review = await run_in_threadpool(gather)
    monitor_history = await run_in_threadpool(read_monitor_history, prediction_log.engine)  # for the drift panel
    return HTMLResponse(render_dashboard(predictor.metadata, evaluation, live, monitor_result,
                                         str(monitor_file), settings.max_chars_per_text,
                                         logout=DASHBOARD_COOKIE in request.cookies, review=review,
                                         monitor_history=monitor_history))


@router.post("/dashboard/login", include_in_schema=False)
async def login(request: Request, access: AccessDep) -> Response:
    """The login form's key, checked for ``admin``, kept in the browser as an HttpOnly cookie."""
    if request.headers.get("sec-fetch-site") == "cross-site":  # another site's form: a login CSRF
        return _login(AccessDenied(403, "login refused", "origin", "a form of another site", {}))
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    try:
        access.check(key, ["admin"])
    except AccessDenied as denied:
        return _login(denied if key else AccessDenied(401, "no key entered", "key", "paste an admin key", {}))
    response = RedirectResponse("/dashboard", status_code=303)
    if access.enforcing:
        response.set_cookie(DASHBOARD_COOKIE, key, max_age=DASHBOARD_COOKIE_SECONDS, path="/", secure=True,
                            httponly=True, samesite="strict")
    return response


@router.post("/dashboard/logout", include_in_schema=False)
async def logout() -> Response:
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(DASHBOARD_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
