"""Prometheus metrics: RED request metrics with trace exemplars, dependency latency, release
and pipeline health, served on ``/metrics``. Names and labels: ``docs/metrics.md``."""

from telemetry.metrics.asgi import MetricsMiddleware
from telemetry.metrics.cardinality import UNMATCHED, RouteResolver
from telemetry.metrics.dependencies import record_breadcrumbs, stop_breadcrumbs
from telemetry.metrics.exemplars import current_exemplar, kept_exemplar
from telemetry.metrics.multiprocess import mark_process_dead
from telemetry.metrics.pipeline import PipelineMetrics
from telemetry.metrics.registry import DEFAULT_APDEX_THRESHOLD_S, TelemetryMetrics, request_buckets

__all__ = [
    "DEFAULT_APDEX_THRESHOLD_S",
    "UNMATCHED",
    "MetricsMiddleware",
    "PipelineMetrics",
    "RouteResolver",
    "TelemetryMetrics",
    "current_exemplar",
    "kept_exemplar",
    "mark_process_dead",
    "record_breadcrumbs",
    "request_buckets",
    "stop_breadcrumbs",
]
