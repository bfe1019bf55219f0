"""One propagator for both header styles.

Incoming: W3C ``traceparent`` is preferred; a ``sentry-trace`` header is continued when no
valid ``traceparent`` is present; malformed headers of either style are ignored on their own
(one bad header never poisons the other), and with neither the request starts a new trace.

Outgoing: ``traceparent``, ``sentry-trace`` and one ``baggage`` header that agree. The
``baggage`` header merges the application's own entries with Sentry's dynamic sampling
context (``sentry-*`` entries), because composite propagators that each write ``baggage``
overwrite each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "DEFERRED_SAMPLING_KEY",
    "SENTRY_BAGGAGE_PREFIX",
    "DynamicSamplingContext",
    "PropagationTargets",
    "TelemetryPropagator",
    "build_propagator",
    "header_names_read",
    "parse_sentry_trace",
]

SENTRY_TRACE_HEADER = "sentry-trace"
BAGGAGE_HEADER = "baggage"
SENTRY_BAGGAGE_PREFIX = "sentry-"
#: Set when an incoming ``sentry-trace`` carried no sampling decision: the sampler then
#: decides as for a root while keeping the caller's trace id.
DEFERRED_SAMPLING_KEY = create_key("telemetry-deferred-sampling")
#: The caller's frozen ``sentry-*`` baggage items, re-sent unchanged downstream.
_INCOMING_SENTRY_ITEMS_KEY = create_key("telemetry-incoming-sentry-baggage")

_SENTRY_TRACE_RE = re.compile(r"^[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*$")
_MAX_BAGGAGE_BYTES = 8192
_MAX_BAGGAGE_ITEMS = 64
_W3C = TraceContextTextMapPropagator()


def parse_sentry_trace(value: str) -> tuple[int, int, bool | None] | None:
    """(trace id, parent span id, sampled or None when deferred); None when malformed."""
    match = _SENTRY_TRACE_RE.match(value[:128])
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    flag = match.group(3)
    return trace_id, span_id, None if flag is None else flag == "1"


@dataclass(frozen=True, slots=True)
class DynamicSamplingContext:
    """What a head service tells downstream Sentry SDKs about the trace."""

    public_key: str | None
    release: str | None
    environment: str | None
    sample_rate: float

    def items(self, trace_id: str, sampled: bool) -> dict[str, str]:
        items = {"sentry-trace_id": trace_id}
        if self.public_key:
            items["sentry-public_key"] = self.public_key
        if self.release:
            items["sentry-release"] = self.release
        if self.environment:
            items["sentry-environment"] = self.environment
        items["sentry-sample_rate"] = repr(self.sample_rate)
        items["sentry-sampled"] = "true" if sampled else "false"
        return items


def _parse_baggage(header: str) -> dict[str, str]:
    if len(header) > _MAX_BAGGAGE_BYTES:
        return {}
    entries: dict[str, str] = {}
    for member in header.split(","):
        key, sep, value = member.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        entries[unquote(key)] = unquote(value.split(";", 1)[0].strip())
        if len(entries) >= _MAX_BAGGAGE_ITEMS:
            break
    return entries


def _first(getter: Getter[Any], carrier: Any, name: str) -> str | None:
    values = getter.get(carrier, name)
    if not values:
        return None
    return values[0] if isinstance(values[0], str) else None


class TelemetryPropagator(TextMapPropagator):
    def __init__(self, dsc: DynamicSamplingContext | None = None) -> None:
        self.dsc = dsc

    @property
    def fields(self) -> set[str]:
        return {"traceparent", "tracestate", SENTRY_TRACE_HEADER, BAGGAGE_HEADER}

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        if context is None:
            context = get_current()
        try:
            extracted = _W3C.extract(carrier, context, getter)
        except Exception:  # a hostile header must never break the request
            extracted = context
        if not trace.get_current_span(extracted).get_span_context().is_valid:
            extracted = self._extract_sentry_trace(carrier, context, getter)
        return self._extract_baggage(carrier, extracted, getter)

    def _extract_sentry_trace(
        self, carrier: CarrierT, context: Context, getter: Getter[CarrierT]
    ) -> Context:
        header = _first(getter, carrier, SENTRY_TRACE_HEADER)
        parsed = parse_sentry_trace(header) if header else None
        if parsed is None:
            return context
        trace_id, span_id, sampled = parsed
        span_context = SpanContext(
            trace_id=trace_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
        context = trace.set_span_in_context(NonRecordingSpan(span_context), context)
        if sampled is None:
            context = set_value(DEFERRED_SAMPLING_KEY, True, context)
        return context

    def _extract_baggage(
        self, carrier: CarrierT, context: Context, getter: Getter[CarrierT]
    ) -> Context:
        header = _first(getter, carrier, BAGGAGE_HEADER)
        if not header:
            return context
        entries = _parse_baggage(header)
        sentry_items = {k: v for k, v in entries.items() if k.startswith(SENTRY_BAGGAGE_PREFIX)}
        for key, value in entries.items():
            if not key.startswith(SENTRY_BAGGAGE_PREFIX):
                context = otel_baggage.set_baggage(key, value, context)
        # The caller's sampling context only describes the caller's trace.
        caller = trace.get_current_span(context).get_span_context()
        if (
            sentry_items
            and caller.is_valid
            and sentry_items.get("sentry-trace_id") == (trace.format_trace_id(caller.trace_id))
        ):
            context = set_value(_INCOMING_SENTRY_ITEMS_KEY, sentry_items, context)
        return context

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        if context is None:
            context = get_current()
        span_context = trace.get_current_span(context).get_span_context()
        app_entries: Mapping[str, object] = otel_baggage.get_all(context)
        baggage_items = {
            k: str(v) for k, v in app_entries.items() if not k.startswith(SENTRY_BAGGAGE_PREFIX)
        }
        if span_context.is_valid:
            _W3C.inject(carrier, context, setter)
            trace_id = trace.format_trace_id(span_context.trace_id)
            sampled = span_context.trace_flags.sampled
            setter.set(
                carrier,
                SENTRY_TRACE_HEADER,
                f"{trace_id}-{trace.format_span_id(span_context.span_id)}-{int(sampled)}",
            )
            incoming = get_value(_INCOMING_SENTRY_ITEMS_KEY, context)
            if isinstance(incoming, dict):
                baggage_items.update(incoming)
            elif self.dsc is not None:
                baggage_items.update(self.dsc.items(trace_id, sampled))
        # A baggage header the app put on this very request keeps its entries: ours are
        # merged in (Sentry's entries are ours to set, the app's others are kept).
        existing = _carrier_baggage(carrier)
        if existing:
            own = {k: v for k, v in existing.items() if not k.startswith(SENTRY_BAGGAGE_PREFIX)}
            baggage_items = {**own, **baggage_items}
        if baggage_items:
            setter.set(carrier, BAGGAGE_HEADER, _serialize_baggage(baggage_items))


def _carrier_baggage(carrier: Any) -> dict[str, str]:
    """The ``baggage`` header already on an outgoing carrier (dict or httpx-style headers)."""
    getter = getattr(carrier, "get", None)
    if getter is None:
        return {}
    try:
        value = getter(BAGGAGE_HEADER)
        if value is None and isinstance(carrier, Mapping):
            value = next((v for k, v in carrier.items() if str(k).lower() == BAGGAGE_HEADER), None)
    except Exception:  # an exotic carrier: nothing to merge
        return {}
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return _parse_baggage(value) if isinstance(value, str) and value else {}


class PropagationTargets:
    """Where trace headers and baggage may go, as sentry-sdk's ``trace_propagation_targets``:
    each target is a regular expression searched in the outgoing URL (so a bare host name
    matches). ``None`` means everywhere."""

    def __init__(self, targets: Sequence[str] | None) -> None:
        self.targets = None if targets is None else tuple(t for t in targets if t)
        self._regexes = None if self.targets is None else [re.compile(t) for t in self.targets]

    def allows(self, url: str | None) -> bool:
        if self._regexes is None or url is None:
            # No list, or a carrier that is not an HTTP request (no URL to judge).
            return True
        return any(regex.search(url) for regex in self._regexes)


_URL_ATTRIBUTES = ("url.full", "http.url")


def _outgoing_url(context: Context | None) -> str | None:
    """The URL of the client span current at injection (HTTPX/requests instrumentations
    inject inside the span they started, with the URL among its start attributes)."""
    span = trace.get_current_span(context)
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return None
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            return value
    return None


class TargetedPropagator(TextMapPropagator):
    """Injects only toward the propagation targets; extraction is never limited."""

    def __init__(self, inner: TextMapPropagator, targets: PropagationTargets) -> None:
        self.inner = inner
        self.targets = targets

    @property
    def fields(self) -> set[str]:
        return set(self.inner.fields)

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return self.inner.extract(carrier, context, getter)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        if self.targets.allows(_outgoing_url(context)):
            self.inner.inject(carrier, context, setter)


def header_names_read(propagator: TextMapPropagator) -> frozenset[bytes] | None:
    """The (lower-case, encoded) header names ``propagator`` reads, when that is known for
    certain: the bridge's own propagator, alone behind its targets. None otherwise (an
    ``OTEL_PROPAGATORS`` propagator may read headers its ``fields`` do not name)."""
    if isinstance(propagator, TargetedPropagator):
        propagator = propagator.inner
    if type(propagator) is not TelemetryPropagator:
        return None
    return frozenset(name.lower().encode("latin-1") for name in propagator.fields)


def build_propagator(
    names: Sequence[str] | None,
    dsc: DynamicSamplingContext | None,
    targets: Sequence[str] | None = None,
) -> TextMapPropagator:
    """The global propagator: the project's own unless ``OTEL_PROPAGATORS`` names others.

    ``telemetry`` (or ``sentry``) in the list stands for the project's propagator, so
    ``OTEL_PROPAGATORS=telemetry,b3multi`` adds B3 beside it; ``none`` propagates nothing.
    Other names are the OTel entry points (``tracecontext``, ``baggage``, ``b3``, ...).
    """
    from opentelemetry.propagators.composite import CompositePropagator

    chosen: list[TextMapPropagator] = []
    for name in names or ["telemetry"]:
        key = name.strip().lower()
        if key == "none":
            return CompositePropagator([])
        if key in ("telemetry", "sentry"):
            chosen.append(TelemetryPropagator(dsc))
        else:
            chosen.append(_entry_point_propagator(key))
    inner = chosen[0] if len(chosen) == 1 else CompositePropagator(chosen)
    return TargetedPropagator(inner, PropagationTargets(targets))


def _entry_point_propagator(name: str) -> TextMapPropagator:
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="opentelemetry_propagator", name=name):
        propagator: TextMapPropagator = entry_point.load()()
        return propagator
    raise ValueError(
        f"OTEL_PROPAGATORS names {name!r}, which no installed package provides "
        "(known here: telemetry, tracecontext, baggage, and any installed OTel propagator)"
    )


def _serialize_baggage(items: Mapping[str, str]) -> str:
    members: list[str] = []
    size = 0
    for key, value in items.items():
        member = f"{quote(key, safe='')}={quote(value, safe='')}"
        if size + len(member) + 1 > _MAX_BAGGAGE_BYTES:
            break
        members.append(member)
        size += len(member) + 1
    return ",".join(members)
