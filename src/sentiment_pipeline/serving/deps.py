"""What the routes depend on, as typed aliases (``predictor: PredictorDep``).

Everything is created once per worker by the app's lifespan and kept on ``app.state``. The
dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread, two
thread hops per request that cost more than the model call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Security
from fastapi.security import SecurityScopes

from sentiment_pipeline.core.config import ServeConfig
from sentiment_pipeline.dashboard.page import Evaluation
from sentiment_pipeline.inference.predictor import Predictor
from sentiment_pipeline.predlog.prediction_log import PredictionLog
from sentiment_pipeline.serving.auth import (
    API_KEY_HEADER,
    BEARER,
    KEY_COOKIE,
    AccessControl,
    Principal,
    authenticate,
    authenticate_browser,
    presented_key_or_cookie,
)
from sentiment_pipeline.serving.batching import MicroBatcher
from sentiment_pipeline.serving.metrics import ServiceMetrics


def from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning ``app.state.<name>``."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"{name}_of"
    return dependency


class ServingState(Protocol):
    """What ``POST /v1/predict`` uses of ``app.state``, as one dependency: FastAPI spends ~15 µs
    resolving each dependency of a request, five of them cost more than the TF-IDF of a tweet."""

    predictor: Predictor
    prediction_log: PredictionLog
    settings: ServeConfig
    batcher: MicroBatcher
    metrics: ServiceMetrics


async def serving_state(request: Request) -> ServingState:
    """``app.state``, read at each request: a hot reload replaces the predictor and batcher on it."""
    return request.app.state


ServingDep = Annotated[ServingState, Depends(serving_state)]
PredictorDep = Annotated[Predictor, Depends(from_state("predictor"))]
PredictionLogDep = Annotated[PredictionLog, Depends(from_state("prediction_log"))]
SettingsDep = Annotated[ServeConfig, Depends(from_state("settings"))]
BatcherDep = Annotated[MicroBatcher, Depends(from_state("batcher"))]
MetricsDep = Annotated[ServiceMetrics, Depends(from_state("metrics"))]
EvaluationDep = Annotated[Evaluation, Depends(from_state("evaluation"))]
MonitorFileDep = Annotated[Path, Depends(from_state("monitor_file"))]
AccessDep = Annotated[AccessControl, Depends(from_state("access"))]

# Who is asking (serving/auth.py): a key holding the scope, else 401 (no key, unknown or revoked)
# or 403 (another scope) or 429 (its rate limit). FastAPI's Security() puts the schemes and the
# scope in the OpenAPI schema. /v1/predict also takes the dashboard's login cookie (its text box).
PREDICT_SCOPES = ("predict",)
PredictPrincipal = Annotated[Principal, Security(authenticate_browser, scopes=PREDICT_SCOPES)]
FeedbackPrincipal = Annotated[Principal, Security(authenticate, scopes=["feedback"])]
AdminPrincipal = Annotated[Principal, Security(authenticate, scopes=["admin"])]
KeyPrincipal = Annotated[Principal, Security(authenticate)]  # any valid key
PresentedKeyDep = Annotated[str | None, Depends(presented_key_or_cookie)]  # the dashboard checks it itself


_PREDICT_SECURITY = SecurityScopes(list(PREDICT_SCOPES))


async def predict_principal(request: Request) -> Principal:
    """``PredictPrincipal`` resolved by hand, for the fast path of ``POST /v1/predict``
    (routes/predict.py): the same schemes, the same function choosing among them."""
    return await authenticate_browser(request, _PREDICT_SECURITY, await BEARER(request),
                                      await API_KEY_HEADER(request), await KEY_COOKIE(request))
