"""Rows for the Jaeger side: the spans each configuration exports over OTLP.

The reference is OpenTelemetry's instrumentations alone. One representative span per kind
is picked in each configuration by what it is (route, ``db.system``, statement, name), not
by attributes the bridge might add or lose; the bridge's span must carry every attribute key,
span event and resource attribute the reference's carries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration.fidelity.app import (
    CUSTOM_DESCRIPTION,
    OTEL,
    TRANSACTION_CHILD_DESCRIPTION,
    TRANSACTION_NAME,
)
from tests.integration.fidelity.fields import compared_cell, presence_cell
from tests.integration.fidelity.model import ABSENT, NA_CELL, PRESENT, Cell, Report, Row
from tests.integration.fidelity.run import Observation
from tests.support.otlp_receiver import ReceivedSpan

SECTION = "Jaeger: spans exported over OTLP"
JAEGER_CONFIGS = (OTEL, "bridge-otlp", "bridge-envelope")

Selector = Callable[[list[ReceivedSpan]], ReceivedSpan | None]


def _attr(span: ReceivedSpan, *names: str) -> Any:
    return next((span.attributes[n] for n in names if n in span.attributes), None)


def _servers(spans: list[ReceivedSpan], route: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == "SERVER" and s.attributes.get("http.route") == route]


def _in_trace_of(route: str, nth: int = 0) -> Callable[[list[ReceivedSpan]], list[ReceivedSpan]]:
    def spans_of(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
        servers = _servers(spans, route)
        if len(servers) <= nth:
            return []
        return [s for s in spans if s.trace_id == servers[nth].trace_id]

    return spans_of


_ITEMS = _in_trace_of("/items/{item_id}")


def _first(found: list[ReceivedSpan]) -> ReceivedSpan | None:
    return found[0] if found else None


def _server(route: str) -> Selector:
    return lambda spans: _first(_servers(spans, route))


def _verb(span: ReceivedSpan) -> str:
    """``GET``, ``SELECT``: from the operation or statement attributes, else the name."""
    for text in (
        _attr(span, "db.operation.name", "db.operation"),
        _attr(span, "db.query.text", "db.statement"),
        span.name,
    ):
        if isinstance(text, str) and text.split():
            return text.split()[0].upper()
    return ""


def _redis(command: str, nth: int = 0) -> Selector:
    def select(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        found = [
            s for s in _ITEMS(spans)
            if _attr(s, "db.system", "db.system.name") == "redis" and _verb(s) == command
        ]  # fmt: skip
        return found[nth] if len(found) > nth else None

    return select


def _sql(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return _first(
        [
            s for s in _ITEMS(spans)
            if _attr(s, "db.system", "db.system.name") == "postgresql" and _verb(s) == "SELECT"
        ]
    )  # fmt: skip


def _http_client(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return _first(
        [
            s for s in _ITEMS(spans)
            if s.kind == "CLIENT" and _attr(s, "http.method", "http.request.method")
        ]
    )  # fmt: skip


def _named(name: str, in_items: bool = True) -> Selector:
    def select(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        pool = _ITEMS(spans) if in_items else spans
        return _first([s for s in pool if s.name == name])

    return select


def _asgi_send(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return _first([s for s in _ITEMS(spans) if s.name.endswith(" http send")])


def _standalone(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return _first([s for s in spans if s.parent_span_id is None and s.name == TRANSACTION_NAME])


#: (subject, selector) in table order.
VARIANTS: tuple[tuple[str, Selector], ...] = (
    ("server span `GET /items/{item_id}`", _server("/items/{item_id}")),
    ("server span `POST /checkout` (handled error)", _server("/checkout")),
    ("server span `POST /profile` (unhandled error, 500)", _server("/profile")),
    ("ASGI `http send` sub-span", _asgi_send),
    ("SQLAlchemy span (`SELECT`)", _sql),
    ("Redis span `SET`", _redis("SET")),
    ("Redis span `GET` (hit)", _redis("GET", 0)),
    ("Redis span `GET` (miss)", _redis("GET", 1)),
    ("HTTPX client span", _http_client),
    ("custom span (`start_span`)", _named(CUSTOM_DESCRIPTION)),
    ("standalone transaction (root span)", _standalone),
    ("span inside the standalone transaction", _named(TRANSACTION_CHILD_DESCRIPTION, False)),
)


def _row(subject: str, field: str, cells: dict[str, Cell]) -> Row:
    full = {config: cells.get(config, NA_CELL) for config in cells}
    return Row(SECTION, subject, field, full, reference=(OTEL,))


def _sorted(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return sorted(spans, key=lambda s: s.start_time_unix_nano)


def span_rows(report: Report, observations: dict[str, Observation]) -> None:
    spans = {c: _sorted(observations[c].jaeger_spans) for c in JAEGER_CONFIGS}
    for subject, select in VARIANTS:
        picked = {c: select(spans[c]) for c in JAEGER_CONFIGS}
        reference = picked[OTEL]
        if reference is None:
            raise RuntimeError(f"OpenTelemetry alone exported no {subject}: the scenario broke")
        report.add(_row(subject, "exported", {
            c: Cell(PRESENT if picked[c] is not None else ABSENT) for c in JAEGER_CONFIGS
        }))  # fmt: skip
        for field, read in (
            ("name", lambda s: s.name),
            ("kind", lambda s: s.kind),
            ("status", lambda s: s.status_code),
        ):
            ref = [read(reference)]
            report.add(_row(subject, field, {
                c: compared_cell([read(s)] if (s := picked[c]) else None, ref)
                for c in JAEGER_CONFIGS
            }))  # fmt: skip
        for key in sorted(reference.attributes):
            report.add(_row(subject, f"attribute `{key}`", _key_cells(picked, key)))
        for event in reference.events:
            report.add(_row(subject, f"event `{event.name}`", {
                c: Cell(PRESENT if _event(s, event.name) else ABSENT) if s else Cell(ABSENT)
                for c, s in picked.items()
            }))  # fmt: skip
            for key in sorted(event.attributes):
                report.add(_row(subject, f"event `{event.name}`: `{key}`", {
                    c: presence_cell(_event_values(s, event.name, key), None) if s
                    else Cell(ABSENT)
                    for c, s in picked.items()
                }))  # fmt: skip
    resources = {c: (spans[c][0].resource_attributes if spans[c] else {}) for c in spans}
    for key in sorted(resources[OTEL]):
        report.add(_row("resource", f"`{key}`", {
            c: presence_cell([resources[c][key]] if key in resources[c] else None, None)
            for c in JAEGER_CONFIGS
        }))  # fmt: skip


def _key_cells(picked: dict[str, ReceivedSpan | None], key: str) -> dict[str, Cell]:
    reference = picked[OTEL]
    assert reference is not None
    ref_values = [reference.attributes[key]]
    cells: dict[str, Cell] = {}
    for config, span in picked.items():
        values = [span.attributes[key]] if span is not None and key in span.attributes else None
        cells[config] = presence_cell(values, None if config == OTEL else ref_values)
    return cells


def _event(span: ReceivedSpan, name: str) -> bool:
    return any(e.name == name for e in span.events)


def _event_values(span: ReceivedSpan, name: str, key: str) -> list[Any] | None:
    values = [e.attributes[key] for e in span.events if e.name == name and key in e.attributes]
    return values or None


def server_span(observation: Observation, route: str, nth: int = 0) -> ReceivedSpan | None:
    servers = _servers(_sorted(observation.jaeger_spans), route)
    return servers[nth] if len(servers) > nth else None
