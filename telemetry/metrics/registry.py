"""Prometheus metrics: RED request metrics with trace exemplars, dependency latency, release
and telemetry-pipeline health, served on ``/metrics``. Names and labels: ``docs/metrics.md``.

Usage (what ``setup_telemetry`` does)::

    metrics = TelemetryMetrics(service="api", version="1.2.0", environment="production")
    metrics.install(app)                  # request metrics + /metrics, before the app starts
    metrics.instrument_dependencies()     # httpx, SQLAlchemy, redis: every call, sampled or not

Registry: every instance registers its metrics in its own ``CollectorRegistry`` so tests and
repeated setups never collide on "Duplicated timeseries". ``/metrics`` serves that registry
plus prometheus-client's default ``REGISTRY`` (``include_default_registry=True``), so the
application's own metrics and the process/GC collectors appear on the same page. Pass
``registry=prometheus_client.REGISTRY`` to register these metrics in the default registry
instead (then it is served once). In multiprocess mode ``/metrics`` serves the aggregate of
every worker instead, see ``telemetry.metrics.multiprocess`` for the design and its trade-off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from telemetry.metrics.asgi import MetricsMiddleware
from telemetry.metrics.cardinality import LabelGuard, RouteResolver, normalize_method
from telemetry.metrics.dependencies import instrument as meter_dependency_calls
from telemetry.metrics.dependencies import uninstrument as stop_metering_dependency_calls
from telemetry.metrics.exemplars import SharedExemplars, current_exemplar
from telemetry.metrics.multiprocess import (
    ExemplarStore,
    MultiProcessExemplarCollector,
    multiprocess_dir,
)
from telemetry.metrics.pipeline import PipelineMetrics
from telemetry.shared import ASGIApp

__all__ = ["DEFAULT_APDEX_THRESHOLD_S", "TelemetryMetrics", "request_buckets"]

DEFAULT_APDEX_THRESHOLD_S = 0.5
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DEPENDENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUESTS = "http_server_requests_total"
_DURATION = "http_server_request_duration_seconds"
_EXCEPTIONS = "http_server_exceptions_total"
_CLIENT = "http_client_request_duration_seconds"
_DB = "db_client_operation_duration_seconds"


def request_buckets(
    apdex_threshold_s: float = DEFAULT_APDEX_THRESHOLD_S, base: Sequence[float] = _REQUEST_BUCKETS
) -> tuple[float, ...]:
    """Histogram bounds that always contain the Apdex thresholds T and 4T, so Apdex is exact
    from ``_bucket{le="T"}`` and ``_bucket{le="4T"}`` instead of interpolated."""
    if apdex_threshold_s <= 0:
        raise ValueError(f"apdex_threshold_s must be > 0, got {apdex_threshold_s}")
    # Rounded so a bound prints as le="1.2", never le="1.2000000000000002".
    return tuple(sorted({*base, round(apdex_threshold_s, 9), round(4 * apdex_threshold_s, 9)}))


class _Union:
    """Collects several registries as one, for one exposition."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self._registries = registries

    def collect(self) -> Iterable[Metric]:
        for registry in self._registries:
            yield from registry.collect()


class TelemetryMetrics:
    """All metrics of one service, one registry, one ``/metrics`` endpoint.

    ``label_limits`` overrides the bound of distinct values per label name (``route``: 100,
    ``status_code``: 40, ``peer``: 100, see ``telemetry.metrics.cardinality.DEFAULT_LABEL_LIMITS``).
    Multiprocess mode is on when prometheus-client runs with ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(
        self,
        service: str,
        version: str = "0.0.0",
        environment: str = "development",
        *,
        release: str | None = None,
        registry: CollectorRegistry | None = None,
        apdex_threshold_s: float = DEFAULT_APDEX_THRESHOLD_S,
        path: str = "/metrics",
        label_limits: Mapping[str, int] | None = None,
        include_default_registry: bool = True,
        exemplar_flush_interval_s: float = 1.0,
        exemplars_for: str = "sampled",
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"metrics path must start with '/', got {path!r}")
        self.service = service
        if exemplars_for not in ("sampled", "kept"):
            raise ValueError(f"exemplars_for must be 'sampled' or 'kept', got {exemplars_for!r}")
        #: "kept" (collector mode): the Collector decides later which traces to keep, so only
        #: traces sure to be kept (server errors, spans marked ``telemetry.keep``) get one.
        self.exemplars_for = exemplars_for
        self.path = path
        self.registry = registry if registry is not None else CollectorRegistry()
        self.buckets = request_buckets(apdex_threshold_s)
        mp_dir = multiprocess_dir()
        store = ExemplarStore(mp_dir, exemplar_flush_interval_s) if mp_dir else None
        self._shared = SharedExemplars(store) if store is not None else None
        r = self.registry
        self._overflow = Counter(
            "telemetry_metric_label_overflow",
            "Label values folded into <overflow> by the cardinality guard.",
            ["metric", "label"],
            registry=r,
        )
        self.guard = LabelGuard(lambda m, lb: self._overflow.labels(m, lb).inc(), label_limits)
        # Born at zero, so the first overflow shows in rate() and on the pipeline dashboard.
        self._overflow.labels(_REQUESTS, "route").inc(0)
        self._routes = RouteResolver()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._db_labels: dict[tuple[str, str], tuple[str, str, str]] = {}
        #: (method, route, status) -> (label values, requests child, duration child)
        self._request_series: dict[tuple[str, str, str], tuple[tuple[str, ...], Any, Any]] = {}
        server = ["service", "method", "route", "status_code"]
        self._requests = Counter("http_server_requests", "HTTP requests.", server, registry=r)
        self._duration = Histogram(
            _DURATION, "HTTP request duration.", server, buckets=self.buckets, registry=r
        )
        self._in_progress = Gauge(
            "http_server_requests_in_progress",
            "HTTP requests being served.",
            ["service", "method"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._exceptions = Counter(
            "http_server_exceptions",
            "Unhandled exceptions in request handling.",
            ["service", "method", "route", "exception_type"],
            registry=r,
        )
        self._client = Histogram(
            _CLIENT,
            "Outgoing HTTP request duration (to response headers).",
            ["service", "method", "peer", "status_code"],
            buckets=_DEPENDENCY_BUCKETS,
            registry=r,
        )
        self._db = Histogram(
            _DB,
            "Database and cache operation duration.",
            ["service", "system", "operation"],
            buckets=_DEPENDENCY_BUCKETS,
            registry=r,
        )
        build = Gauge(
            "service_build_info",
            "Build of the running service (always 1).",
            ["service", "version", "environment", "release"],
            registry=r,
            multiprocess_mode="max",
        )
        build.labels(service, version, environment, release or f"{service}@{version}").set(1)
        self.pipeline = PipelineMetrics(r, self.guard)
        if store is not None and mp_dir:
            self._exposed: Any = MultiProcessExemplarCollector(mp_dir, store)
        elif include_default_registry and self.registry is not REGISTRY:
            self._exposed = _Union(self.registry, REGISTRY)
        else:
            self._exposed = self.registry

    # -- recording -------------------------------------------------------------------------

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        # prometheus-client's labels() validates and locks on every call, a third of the
        # middleware's cost; children are cached, bounded like the series by the label guard.
        child = self._children.get((metric, values))
        if child is None:
            child = self._children[(metric, values)] = metric.labels(*values)
        return child

    def _observe(
        self, hist: Histogram, values: tuple[str, ...], value: float, ex: dict[str, str] | None
    ) -> None:
        self._child(hist, values).observe(value, exemplar=ex)
        if ex is not None and self._shared is not None:
            self._shared.observed(hist, values, ex, value)

    # The same mechanics for series other parts of the package declare (the GenAI series):
    # the child cache, and exemplars shared across workers in multiprocess mode.

    def child(self, metric: Any, values: tuple[str, ...]) -> Any:
        """The cached labelled child of ``metric`` (labels already bounded by the guard)."""
        return self._child(metric, values)

    def observe(
        self, hist: Histogram, values: tuple[str, ...], value: float, ex: dict[str, str] | None
    ) -> None:
        """Observe ``value`` with its exemplar, shared across workers when multiprocess."""
        self._observe(hist, values, value, ex)

    def count(
        self, counter: Any, name: str, values: tuple[str, ...], amount: float,
        ex: dict[str, str] | None,
    ) -> None:  # fmt: skip
        """Increment ``counter`` by ``amount`` with its exemplar, shared when multiprocess."""
        self._child(counter, values).inc(amount, exemplar=ex)
        if ex is not None and self._shared is not None:
            self._shared.counted(counter, name, values, ex, amount)

    def in_progress(self, method: str) -> Any:
        """The in-progress gauge of ``method`` (already normalised) for this service."""
        return self._child(self._in_progress, (self.service, method))

    def route_template(self, scope: MutableMapping[str, Any], root_path: str, app: Any) -> str:
        """The route template a request matched (``<unmatched>`` when none did)."""
        return self._routes.template(scope, root_path, app)

    def record_request(
        self, method: str, route: str, status_code: str, duration_s: float,
        exemplar: dict[str, str] | None = None, exception_type: str | None = None,
    ) -> None:  # fmt: skip
        """One served request; ``route`` must already be a template (or ``<unmatched>``)."""
        method = normalize_method(method)
        series = self._request_series.get((method, route, status_code))
        if series is None:
            series = self._new_request_series(method, route, status_code)
        values, requests, duration = series
        requests.inc(exemplar=exemplar)
        duration.observe(duration_s, exemplar=exemplar)
        if exemplar is not None and self._shared is not None:
            self._shared.counted(self._requests, _REQUESTS, values, exemplar)
            self._shared.observed(self._duration, values, exemplar, duration_s)
        if exception_type is not None:
            route = values[2]
            kind = self.guard.bound(_EXCEPTIONS, "exception_type", exception_type)
            self._child(self._exceptions, (self.service, method, route, kind)).inc()

    def _new_request_series(
        self, method: str, route: str, status_code: str
    ) -> tuple[tuple[str, ...], Any, Any]:
        guard = self.guard
        bounded_route = guard.bound(_REQUESTS, "route", route)
        bounded_status = guard.bound(_REQUESTS, "status_code", status_code)
        values = (self.service, method, bounded_route, bounded_status)
        series = (values, self._child(self._requests, values), self._child(self._duration, values))
        if bounded_route == route and bounded_status == status_code:
            # Remembered only for label values the guard admitted, so this stays as bounded
            # as the series are; overflowing values go through the guard every time.
            self._request_series[(method, route, status_code)] = series
        return series

    def record_http_client(
        self, method: str, peer: str, status_code: str, duration_s: float
    ) -> None:
        peer = self.guard.bound(_CLIENT, "peer", peer)
        status_code = self.guard.bound(_CLIENT, "status_code", status_code)
        values = (self.service, normalize_method(method), peer, status_code)
        self._observe(self._client, values, duration_s, self._dependency_exemplar())

    def record_db(self, system: str, operation: str, duration_s: float) -> None:
        labels = self._db_labels.get((system, operation))
        if labels is None:
            bounded_system = self.guard.bound(_DB, "system", system)
            bounded_operation = self.guard.bound(_DB, "operation", operation)
            labels = (self.service, bounded_system, bounded_operation)
            if bounded_system == system and bounded_operation == operation:
                # As the request series: remembered only once the guard admitted them.
                self._db_labels[(system, operation)] = labels
        self._observe(self._db, labels, duration_s, self._dependency_exemplar())

    def _dependency_exemplar(self) -> dict[str, str] | None:
        # A dependency call's own span carries no keep mark: in "kept" mode it gets none.
        return current_exemplar() if self.exemplars_for == "sampled" else None

    # -- wiring ----------------------------------------------------------------------------

    def install(self, app: Any) -> None:
        """Add the request-metrics middleware (which also serves ``self.path``) to a
        Starlette/FastAPI app. Idempotent for this instance; a second instance on the same app
        is refused because every request would be counted twice."""
        installed = getattr(app.state, "telemetry_metrics", None)
        if installed is self:
            return
        if installed is not None:
            raise RuntimeError("another TelemetryMetrics is already installed on this app")
        app.add_middleware(MetricsMiddleware, metrics=self)
        app.state.telemetry_metrics = self

    def asgi(self, app: ASGIApp) -> ASGIApp:
        """The same middleware around any ASGI application (no Starlette needed)."""
        return MetricsMiddleware(app, self)

    def instrument_dependencies(self) -> list[str]:
        """Record every httpx, SQLAlchemy and redis call, sampled or not; returns the libraries
        found. Before or after OpenTelemetry's instrumentors, see ``dependencies``."""
        return meter_dependency_calls(self)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics (the only format that carries
        exemplars) when ``accept`` asks for ``application/openmetrics-text``, else text 0.0.4."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._exposed), content_type

    def close(self) -> None:
        """Stop recording dependency calls into this instance and flush shared exemplars."""
        stop_metering_dependency_calls(self)
        if self._shared is not None:
            self._shared.close()
