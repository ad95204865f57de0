"""Prometheus metrics, served at /metrics."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "aigate_requests_total", "HTTP requests handled", ["surface", "status"]
)
LATENCY = Histogram(
    "aigate_request_seconds",
    "HTTP request latency",
    ["surface"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPSTREAM_ERRORS = Counter(
    "aigate_upstream_errors_total", "Failed upstream attempts", ["platform", "kind"]
)
UNAUTHENTICATED = Counter("aigate_unauthenticated_total", "Requests refused for bad credentials", ["surface"])
WRITER_QUEUE = Gauge("aigate_writer_queue_depth", "Rows waiting in the batched writer")
WRITER_LAG = Gauge("aigate_writer_lag_seconds", "Age of the oldest row of the last flush")
WRITER_ROWS = Counter("aigate_writer_rows_total", "Rows committed by the batched writer")
WRITER_RETRIES = Counter("aigate_writer_retries_total", "Flushes retried for a database outage")
WRITER_REJECTED = Counter("aigate_writer_rejected_total", "Rows the database refused")
WRITER_JOURNALED = Counter("aigate_writer_journaled_total",
                           "Rows spilled to the local journal (database down, queue full)")
