"""Prometheus metrics, served at /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("aigate_requests_total", "HTTP requests handled", ["surface", "status"])
LATENCY = Histogram(
    "aigate_request_seconds",
    "HTTP request latency",
    ["surface"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPSTREAM_ERRORS = Counter("aigate_upstream_errors_total", "Failed upstream attempts", ["platform", "kind"])
UNAUTHENTICATED = Counter("aigate_unauthenticated_total", "Requests refused for bad credentials", ["surface"])
WRITER_QUEUE = Gauge("aigate_writer_queue_depth", "Rows waiting in the batched writer")
WRITER_LAG = Gauge("aigate_writer_lag_seconds", "Age of the oldest row of the last flush")
WRITER_ROWS = Counter("aigate_writer_rows_total", "Rows committed by the batched writer")
WRITER_RETRIES = Counter("aigate_writer_retries_total", "Flushes retried for a database outage")
WRITER_REJECTED = Counter("aigate_writer_rejected_total", "Rows the database refused")
WRITER_JOURNALED = Counter(
    "aigate_writer_journaled_total", "Rows spilled to the local journal (database down, queue full)"
)


# --- operating many platforms (SPEC §14)
UPSTREAM_ATTEMPTS = Counter(
    "aigate_upstream_attempts_total", "Upstream attempts by outcome", ["platform", "model", "outcome"]
)
HEALTH_CHANGES = Counter(
    "aigate_health_changes_total",
    "Platforms and keys taken out of or back into rotation",
    ["platform", "scope", "state"],
)
HEALTH_COOLDOWNS = Counter(
    "aigate_health_cooldowns_total", "Cooldowns started (429, Retry-After)", ["platform", "scope"]
)
HEALTH_PROBES = Counter(
    "aigate_health_probes_total", "Health probes of platforms and keys that are out", ["platform", "outcome"]
)
PLATFORM_UP = Gauge("aigate_platform_up", "1 while a platform is in rotation, 0 while it is down", ["platform"])
WEBHOOK_DELIVERIES = Counter(
    "aigate_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["event", "outcome"]
)

# per model and per strategy, from each call's usage log row
CALLS = Counter("aigate_calls_total", "Metered calls", ["model", "strategy", "code"])
CALL_TOKENS = Counter("aigate_call_tokens_total", "Tokens of metered calls", ["model", "strategy", "direction"])
CALL_USED_AMOUNT = Counter("aigate_call_used_amount_total", "used_amount of metered calls", ["model", "strategy"])
CALL_TTFB = Histogram(
    "aigate_call_ttfb_seconds",
    "Time to the first upstream byte of metered calls",
    ["model", "strategy"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


_children: dict[tuple, Any] = {}


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once: ``labels()`` takes a lock and rebuilds
    its key on every call, a cost the per-request paths pay several times."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


def observe_call(
    *, model: str, strategy: str, code: int, input_tokens: int, output_tokens: int, used_amount, ttfb_ms: int
) -> None:
    """Count one ended call (``aigate.engine.observe.call_ended``)."""
    child(CALLS, model, strategy, str(code)).inc()
    if input_tokens:
        child(CALL_TOKENS, model, strategy, "input").inc(input_tokens)
    if output_tokens:
        child(CALL_TOKENS, model, strategy, "output").inc(output_tokens)
    if used_amount:
        child(CALL_USED_AMOUNT, model, strategy).inc(float(used_amount))
    if ttfb_ms:
        child(CALL_TTFB, model, strategy).observe(ttfb_ms / 1000)
