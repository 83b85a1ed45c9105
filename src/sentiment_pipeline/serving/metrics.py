"""The service's Prometheus metrics.

One worker: the app's own registry. Several (``serve.workers > 1``): ``sentiment-pipeline serve``
sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before the workers start, every worker's
values go to files there (prometheus-client's multiprocess mode), and ``/metrics``, whichever
worker answers it, reads them all: counters and histograms summed over the workers, dead ones
included (their counts happened), gauges of live workers only (the supervisor marks dead ones).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from sentiment_pipeline.predlog.prediction_log import PredictionLog

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONNECTION_REFUSALS = ("head_too_large", "head_timeout", "body_timeout", "bad_request")


class ServiceMetrics:
    """Prometheus metrics of one app (its own registry: no process-global state)."""

    def __init__(self, classes: list[str]) -> None:
        # where every worker's values are (prometheus-client reads the same variable when imported)
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
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
        self.in_flight = Gauge("sentiment_requests_in_flight", "Prediction requests admitted and not yet answered",
                               multiprocess_mode="livesum", registry=self.registry)
        self.shed = Counter("sentiment_requests_shed", "Requests refused with a 503: over serve.max_inflight",
                            ["path"], registry=self.registry)
        # answered by the HTTP protocol before the app saw a request (server.py): no path to label
        self.connection_refusals = Counter(
            "sentiment_connection_refusals", "Requests refused before the app: head_too_large (431), "
            "head_timeout (408, or closed when nothing came), body_timeout (408), bad_request (400)",
            ["reason"], registry=self.registry)
        for reason in CONNECTION_REFUSALS:  # every reason shows up, at 0
            self.connection_refusals.labels(reason)
        self.worker_started = Gauge("sentiment_worker_start_time_seconds", "When each live worker started (Unix time)",
                                    multiprocess_mode="liveall", registry=self.registry)
        self.worker_started.set(time.time())
        self.log_spool_bytes = Gauge("sentiment_log_spool_bytes", "Answered rows on disk, not yet in the database",
                                     multiprocess_mode="livesum", registry=self.registry)
        self.log_database_up = Gauge("sentiment_log_database_up", "1 when the prediction log's database takes writes",
                                     multiprocess_mode="livemin", registry=self.registry)
        self.log_shipped = Counter("sentiment_log_rows_shipped", "Rows written to the prediction log's database",
                                   registry=self.registry)
        self.log_dropped = Counter("sentiment_log_rows_dropped", "Rows not logged: spool full, serve.log_overflow: drop",
                                   registry=self.registry)
        self.log_refused = Counter("sentiment_log_rows_refused", "Rows the database refused (a value it cannot store)",
                                   registry=self.registry)
        self._log_seen: dict[Counter, int] = {}
        # every class shows up, at 0, before its first prediction
        self._per_class = {label: self.predictions.labels(label=label) for label in classes}

    def add_classes(self, classes: list[str]) -> None:
        """A reloaded model's classes (any new one starts at 0)."""
        for label in classes:
            if label not in self._per_class:
                self._per_class[label] = self.predictions.labels(label=label)

    def observe_log(self, log: PredictionLog) -> None:
        """The prediction log's state (called every second by the app)."""
        self.log_spool_bytes.set(log.spool_bytes)
        self.log_database_up.set(1 if log.database_up else 0)
        for counter, value in ((self.log_shipped, log.shipped), (self.log_dropped, log.dropped),
                               (self.log_refused, log.refused)):
            seen = self._log_seen.get(counter, 0)
            if value > seen:
                counter.inc(value - seen)
                self._log_seen[counter] = value

    def observe_prediction(self, label: str, confidence: float) -> None:
        self._per_class[label].inc()
        self.confidence.observe(confidence)

    def exposition(self) -> bytes:
        """Prometheus' text format: this app's registry, or every worker's values."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.multiprocess_dir)
        return generate_latest(registry)
