"""HTTP request count and duration per route, method and status, on every service's /metrics."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator, metrics

# Latency buckets in seconds: commands take milliseconds, reports and the quarterly PDF longer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Made once per process: a second registration of the same names would be refused, and a
# process may build several apps (tests do).
HTTP_METRICS = [
    metric
    for metric in (
        metrics.requests(metric_namespace="ipmg"),
        metrics.latency(metric_namespace="ipmg", buckets=LATENCY_BUCKETS),
    )
    if metric is not None
]


def instrument_http(app: FastAPI) -> None:
    """Count and time every request by route template (unknown paths as one), with its
    exact status code, so 4xx and 5xx stay apart."""
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_group_untemplated=True,
        excluded_handlers=["/metrics"],
    )
    for metric in HTTP_METRICS:
        instrumentator.add(metric)
    instrumentator.instrument(app)
