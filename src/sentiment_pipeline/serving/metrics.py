"""The service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ServiceMetrics:
    """Prometheus metrics of one app (its own registry: no process-global state)."""

    def __init__(self, classes: list[str]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sentiment_requests", "HTTP requests", ["method", "path", "status"],
                                registry=self.registry)
        self.latency = Histogram("sentiment_request_seconds", "Request latency", ["path"],
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.registry)
        self.predictions = Counter("sentiment_predictions", "Predictions per class", ["label"],
                                   registry=self.registry)
        self.confidence = Histogram("sentiment_prediction_confidence", "Confidence of predictions",
                                    buckets=tuple(i / 10 for i in range(1, 11)), registry=self.registry)
        # every class shows up, at 0, before its first prediction
        self._per_class = {label: self.predictions.labels(label=label) for label in classes}

    def observe_prediction(self, label: str, confidence: float) -> None:
        self._per_class[label].inc()
        self.confidence.observe(confidence)
