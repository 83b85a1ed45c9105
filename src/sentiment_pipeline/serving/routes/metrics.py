"""``GET /metrics``: Prometheus' text format (not part of the OpenAPI schema)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sentiment_pipeline.serving.deps import MetricsDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(service_metrics: MetricsDep) -> Response:
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)
