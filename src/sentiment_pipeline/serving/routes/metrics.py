"""``GET /metrics``: Prometheus' text format (not part of the OpenAPI schema); with several
workers, every worker's values (see ``serving/metrics.py``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from sentiment_pipeline.serving.deps import AdminPrincipal, MetricsDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(service_metrics: MetricsDep, _: AdminPrincipal) -> Response:
    """Needs an ``admin`` key (Prometheus: ``authorization`` in deploy/prometheus.yml)."""
    return Response(service_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
