"""One head sampler decides for every sink.

Sentry and Jaeger both receive exactly the spans this sampler records, so their trace sets
are identical and no sink resamples. Decisions, in order:

1. a span with a parent follows the parent (a remote parent whose ``sentry-trace`` carried
   no decision is decided here, like a root);
2. excluded routes (``/health/*``, ``/metrics``) are never traced;
3. critical routes are always traced;
4. a user ``traces_sampler`` gets the route, method and name and may return a rate;
5. otherwise the profile's rate, applied to the trace id so every service that shares the
   rate takes the same decision for the same trace.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.context import Context, get_value
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from telemetry.settings import TracesSampler
from telemetry.shared import KEEP_ATTRIBUTE
from telemetry.tracing.propagation import DEFERRED_SAMPLING_KEY

__all__ = ["RouteAwareSampler", "RoutePatterns"]

_TRACE_ID_LIMIT = (1 << 64) - 1
#: Distinct paths whose pattern match is remembered, per set of patterns.
MAX_REMEMBERED_PATHS = 4096


class _Verdict(enum.Enum):
    DROP = "drop"
    SAMPLE = "sample"
    #: sampled, and marked for a downstream tail sampler to keep (collector mode)
    KEEP = "keep"


class RoutePatterns:
    """Glob-style route patterns (``/health/*``) compiled once into one regex."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p for p in patterns if p)
        alternatives = [_glob_to_regex(p) for p in self.patterns]
        self._regex = re.compile("^(?:" + "|".join(alternatives) + ")$") if alternatives else None
        # Answers per path: each request asks up to six times (gate, sampler, by route and
        # by path), and a service has few distinct paths. Bounded: a crawler's random paths
        # are matched again once it is full.
        self._known: dict[str, bool] = {}

    def matches(self, path: str | None) -> bool:
        if not path or self._regex is None:
            return False
        known = self._known.get(path)
        if known is None:
            known = self._regex.match(path.split("?", 1)[0]) is not None
            if len(self._known) < MAX_REMEMBERED_PATHS:
                self._known[path] = known
        return known

    def as_url_regexes(self) -> str:
        """The patterns as the comma-separated URL regexes OTel's ``excluded_urls`` takes."""
        return ",".join(
            r"^[a-z]+://[^/]+" + _glob_to_regex(p) + r"(?:\?.*)?$" for p in self.patterns
        )


def _glob_to_regex(pattern: str) -> str:
    pattern = "/" + pattern.lstrip("/")
    # ``/health/*`` covers ``/health`` itself too: the probe path without a suffix.
    if pattern.endswith("/*"):
        return re.escape(pattern[:-2]) + r"(?:/.*)?"
    return re.escape(pattern).replace(r"\*", "[^/]*")


def _route_of(name: str, attributes: Attributes) -> tuple[str | None, str | None, str | None]:
    """(route template, raw path, method) from a server span's start attributes."""
    attrs: Mapping[str, Any] = attributes or {}
    route = attrs.get("http.route")
    path = attrs.get("url.path") or attrs.get("http.target")
    method = attrs.get("http.request.method") or attrs.get("http.method")
    return _with_name(name, route, path, method)


def _with_name(
    name: str, route: Any, path: Any, method: Any
) -> tuple[str | None, str | None, str | None]:
    if " " in name:
        # FastAPI's server span name is "<METHOD> <route template>".
        method_part, _, route_part = name.partition(" ")
        if route is None and route_part.startswith("/"):
            route = route_part
        method = method or method_part
    return (
        str(route) if route is not None else None,
        str(path) if path is not None else None,
        str(method) if method is not None else None,
    )


class RouteAwareSampler(Sampler):
    def __init__(
        self,
        rate: float,
        *,
        critical_routes: Sequence[str] = (),
        excluded_routes: Sequence[str] = (),
        traces_sampler: TracesSampler | None = None,
        mark_critical: bool = False,
        follow_parent: bool = True,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be within [0, 1], got {rate}")
        self.rate = rate
        self.critical = RoutePatterns(critical_routes)
        self.excluded = RoutePatterns(excluded_routes)
        self.traces_sampler = traces_sampler
        self.mark_critical = mark_critical
        # False only for the standard non-parent-based samplers (OTEL_TRACES_SAMPLER=
        # always_on, always_off, traceidratio): every span is then decided on its own.
        self.follow_parent = follow_parent

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        route, path, method = _route_of(name, attributes)
        decision = self._verdict(
            parent_context, parent, trace_id, name, kind, attributes, route, path, method
        )
        # The SDK builds the span from the result alone: the start attributes and the
        # parent's trace state must be handed back, or every span loses them.
        if decision is _Verdict.DROP:
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        if decision is _Verdict.KEEP:
            attributes = {**(attributes or {}), KEEP_ATTRIBUTE: True}
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)

    def samples_request(
        self,
        parent_context: Context | None,
        parent: SpanContext,
        trace_id: int,
        name: str,
        route: str | None,
        path: str | None,
        method: str | None,
    ) -> bool:
        """Whether the server span of a request would be sampled: the decision
        :meth:`should_sample` takes for it, from the route, path and method the span's
        start attributes carry (``telemetry.tracing.gate`` asks before the span exists)."""
        attributes: dict[str, str] | None = None
        if self.traces_sampler is not None:
            # A user sampler is handed the start attributes, as should_sample would be.
            attributes = {}
            if route:
                attributes["http.route"] = route
            if path:
                attributes["url.path"] = path
            if method:
                attributes["http.request.method"] = method
        route, path, method = _with_name(name, route or None, path or None, method or None)
        verdict = self._verdict(
            parent_context, parent, trace_id, name, SpanKind.SERVER, attributes, route, path, method
        )
        return verdict is not _Verdict.DROP

    def _verdict(
        self,
        parent_context: Context | None,
        parent: SpanContext,
        trace_id: int,
        name: str,
        kind: SpanKind | None,
        attributes: Attributes,
        route: str | None,
        path: str | None,
        method: str | None,
    ) -> _Verdict:
        deferred = bool(get_value(DEFERRED_SAMPLING_KEY, parent_context))
        if kind is SpanKind.SERVER and (
            self.excluded.matches(route) or self.excluded.matches(path)
        ):
            return _Verdict.DROP
        if parent.is_valid and not deferred and self.follow_parent:
            return _Verdict.SAMPLE if parent.trace_flags.sampled else _Verdict.DROP
        if self.critical.matches(route) or self.critical.matches(path):
            return _Verdict.KEEP if self.mark_critical else _Verdict.SAMPLE
        rate = self.rate
        if self.traces_sampler is not None:
            chosen = self.traces_sampler(
                {
                    "route": route,
                    "path": path,
                    "method": method,
                    "name": name,
                    # Sentry-style samplers look the route up under "transaction".
                    "transaction": route or name,
                    "kind": kind.name if kind is not None else None,
                    "attributes": dict(attributes or {}),
                }
            )
            if chosen is not None:
                rate = min(1.0, max(0.0, float(chosen)))
        return _Verdict.SAMPLE if self._by_trace_id(trace_id, rate) else _Verdict.DROP

    @staticmethod
    def _by_trace_id(trace_id: int, rate: float) -> bool:
        # Same rule as OTel's TraceIdRatioBased: the low 64 bits against the bound.
        return (trace_id & _TRACE_ID_LIMIT) < round(rate * (_TRACE_ID_LIMIT + 1))

    def get_description(self) -> str:
        return f"RouteAwareSampler{{rate={self.rate}, critical={list(self.critical.patterns)}}}"
