"""Rows for the Sentry side: error events, transactions and their spans, sessions.

The reference is sentry-sdk alone. Error events arrive as envelopes in both bridge modes;
transactions arrive as envelopes in ``envelope`` mode and as OTLP spans in ``otlp`` mode,
read the way Sentry reads them (``sentry_view``). Rows come from what sentry-sdk alone sent:
every field path of its documents, with the values that matter compared, plus requirement
rows (one event per failure, no secret in clear, one trace id, no data of another request).
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.fidelity.app import (
    BRIDGE_ENVELOPE,
    BRIDGE_OTLP,
    SENTRY,
    TRANSACTION_NAME,
)
from tests.integration.fidelity.fields import (
    Comparator,
    compared_cell,
    find_text,
    flatten,
    presence_cell,
    requirement_cell,
    same,
)
from tests.integration.fidelity.model import ABSENT, NA, PRESENT, Cell, Report, Row
from tests.integration.fidelity.rows_jaeger import server_span
from tests.integration.fidelity.rows_spans import (
    roles_request,
    roles_standalone,
    span_rows,
    start_of,
)
from tests.integration.fidelity.run import SECRETS, Observation
from tests.integration.fidelity.sentry_view import otlp_transactions

SENTRY_CONFIGS = (SENTRY, BRIDGE_OTLP, BRIDGE_ENVELOPE)
EVENTS = "Sentry: error events"
TRANSACTIONS = "Sentry: transactions"
SPANS_REQUEST = "Sentry: spans in the request transaction"
SPANS_STANDALONE = "Sentry: spans in the standalone transaction"

#: Request key -> (route template, which request on that route).
ROUTES = {
    "items": ("/items/{item_id}", 0),
    "checkout": ("/checkout", 0),
    "profile": ("/profile", 0),
    "tasks": ("/tasks", 0),
    "anonymous": ("/items/{item_id}", 1),
}
#: Text that only this request's breadcrumbs contain ("startup": the process before any).
MARKERS = {
    "items": ("reading item 42", "/prices/42", "'book'", "cache:item:42", "cache:missing:42"),
    "checkout": ("checkout of item 43", "/prices/43", "cache:item:43"),
    "profile": ("profile update", "SELECT 1 AS ok"),
    "tasks": ("starting a background task",),
    "anonymous": ("reading item 7", "/prices/7", "cache:item:7", "cache:missing:7"),
    "startup": ("uvicorn", "Started server process", "Application startup", "pg_tables"),
}


def _same_name(reference: Any, value: Any) -> bool:
    """OTel names server spans ``METHOD /route``; the method prefix is accepted."""
    return same(reference, value) or str(value).split(" ", 1)[-1] == str(reference)


VALUE_FIELDS: dict[str, Comparator] = {
    name: same
    for name in (
        "level", "release", "environment", "platform", "transaction_info.source", "user.id",
        "user.email", "tags.tenant_id", "contexts.trace.op", "contexts.trace.status",
        "exception.values[].type", "exception.values[].value",
        "exception.values[].mechanism.handled", "request.method", "request.url",
        "request.query_string", "contexts.context.order_id", "contexts.context.step",
        "contexts.response.status_code",
    )
}  # fmt: skip
VALUE_FIELDS["transaction"] = _same_name


def request_trace(observation: Observation, key: str) -> str | None:
    route, nth = ROUTES[key]
    if observation.config == SENTRY:
        found = sorted(
            (t for t in observation.items("transaction") if t.get("transaction") == route),
            key=start_of,
        )
        return str(found[nth]["contexts"]["trace"]["trace_id"]) if len(found) > nth else None
    span = server_span(observation, route, nth)
    return span.trace_id if span is not None else None


def _exception_type(event: dict[str, Any]) -> str | None:
    values = (event.get("exception") or {}).get("values") or []
    return str(values[-1].get("type")) if values else None


EVENT_VARIANTS = (
    ("handled", "handled error (`capture_exception` with context)", "ValueError", "checkout"),
    ("unhandled", "unhandled error (500, form body)", "RuntimeError", "profile"),
    ("task", "asyncio task failure", "LookupError", "tasks"),
)


def _events_of(observation: Observation, exception_type: str) -> list[dict[str, Any]]:
    found = [e for e in observation.items("event") if _exception_type(e) == exception_type]
    # The event of the failure itself first (not a log record about it).
    return sorted(found, key=lambda e: (e.get("logger") is not None, str(e.get("timestamp"))))


def _doc_rows(
    report: Report,
    section: str,
    subject: str,
    documents: dict[str, dict[str, Any] | None],
    paths: list[str] | None = None,
    skip: frozenset[str] | None = None,
) -> list[str]:
    """A row per field path of the reference document; returns the paths used."""
    flat = {
        c: (flatten(d) if skip is None else flatten(d, skip)) if d is not None else {}
        for c, d in documents.items()
    }
    reference = flat[SENTRY]
    chosen = sorted(reference) if paths is None else paths
    for path in chosen:
        equal = VALUE_FIELDS.get(path)
        cells: dict[str, Cell] = {}
        for config in documents:
            ref = None if config == SENTRY else reference.get(path)
            values = flat[config].get(path)
            if values is None and config != SENTRY and _has_fields_under(flat[config], path):
                # A body sentry-sdk sends as one value ("" when it cannot parse a form)
                # and the bridge as its fields: there, and more of it.
                cells[config] = Cell(PRESENT, "as fields")
                continue
            cells[config] = (
                compared_cell(values, ref, equal) if equal and ref else presence_cell(values, ref)
            )
        report.add(Row(section, subject, f"`{path}`", cells, reference=(SENTRY,)))
    return list(chosen)


def _has_fields_under(flat: dict[str, list[Any]], path: str) -> bool:
    prefix = path + "."
    return any(key.startswith(prefix) for key in flat)


def _delta(reference: dict[str, Any] | None, seen: list[str]) -> list[str]:
    paths = flatten(reference) if reference is not None else {}
    return sorted(p for p in paths if p not in seen or p in VALUE_FIELDS)


def event_rows(report: Report, observations: dict[str, Observation]) -> None:
    seen: list[str] = []
    for _, subject, exception_type, request in EVENT_VARIANTS:
        events = {c: _events_of(observations[c], exception_type) for c in SENTRY_CONFIGS}
        report.add(Row(EVENTS, subject, "events for this one failure", {
            c: requirement_cell(len(found) == 1, f"{len(found)} events")
            for c, found in events.items()
        }, requirement="exactly one (issue 11, item 6)"))  # fmt: skip
        first = {c: (found[0] if found else None) for c, found in events.items()}
        if first[SENTRY] is None:
            raise RuntimeError(f"sentry-sdk alone sent no {subject} event: the scenario broke")
        traces = {c: request_trace(observations[c], request) for c in SENTRY_CONFIGS}
        report.add(Row(EVENTS, subject, "`contexts.trace.trace_id` is the request's trace", {
            c: requirement_cell(
                e is not None and (e.get("contexts") or {}).get("trace", {}).get("trace_id")
                == traces[c], "another trace")
            for c, e in first.items()
        }, requirement="one trace context (DESIGN)"))  # fmt: skip
        report.add(Row(EVENTS, subject, "no secret of the request in clear", {
            c: requirement_cell(e is not None and (path := find_text(e, SECRETS)) is None,
                                f"in `{path}`" if e is not None else "no event")
            for c, e in first.items()
        }, requirement="one scrubbing policy (DESIGN)"))  # fmt: skip
        report.add(Row(EVENTS, subject, "`user.ip_address` not sent", {
            c: requirement_cell(e is not None and not (e.get("user") or {}).get("ip_address"),
                                "sent")
            for c, e in first.items()
        }, requirement="absent with send_default_pii=False (DESIGN trap 16)"))  # fmt: skip
        paths = None if not seen else _delta(first[SENTRY], seen)
        seen += _doc_rows(report, EVENTS, subject, first, paths)
        breadcrumb_rows(report, subject, request, first)


def _crumbs(event: dict[str, Any] | None) -> list[dict[str, Any]]:
    if event is None:
        return []
    values = (event.get("breadcrumbs") or {}).get("values") or []
    return [c for c in values if isinstance(c, dict)]


def _crumb_kind(crumb: dict[str, Any]) -> str:
    return f"`{crumb.get('type') or 'default'}`/`{crumb.get('category') or ''}`"


def breadcrumb_rows(
    report: Report, subject: str, request: str, events: dict[str, dict[str, Any] | None]
) -> None:
    kinds = {c: {_crumb_kind(b) for b in _crumbs(e)} for c, e in events.items()}
    for kind in sorted(kinds[SENTRY]):
        report.add(Row(EVENTS, subject, f"breadcrumb {kind}", {
            c: Cell(PRESENT if kind in found else ABSENT) for c, found in kinds.items()
        }, reference=(SENTRY,)))  # fmt: skip
    foreign = tuple(m for key, markers in MARKERS.items() if key != request for m in markers)
    cells: dict[str, Cell] = {}
    for config, event in events.items():
        strays = [b for b in _crumbs(event) if any(m in json.dumps(b) for m in foreign)]
        cells[config] = requirement_cell(
            event is not None and not strays, f"{len(strays)} from elsewhere"
        )
    report.add(
        Row(
            EVENTS,
            subject,
            "breadcrumbs only from this request",
            cells,
            requirement="isolation (issue 11, item 6)",
        )
    )


# -- transactions ------------------------------------------------------------------------------


def transactions(observation: Observation) -> list[dict[str, Any]]:
    if observation.config == BRIDGE_OTLP:
        return otlp_transactions(observation.sentry_otlp_spans)
    return sorted(observation.items("transaction"), key=start_of)


TRANSACTION_VARIANTS = (
    ("items", "request `GET /items/{item_id}`", "/items/{item_id}", 0),
    ("standalone", f"standalone `{TRANSACTION_NAME}` (`start_transaction`)", TRANSACTION_NAME, 0),
    ("checkout", "request `POST /checkout` (handled error)", "/checkout", 0),
    ("profile", "request `POST /profile` (500)", "/profile", 0),
    ("tasks", "request `POST /tasks` (task failure)", "/tasks", 0),
)


def pick(found: list[dict[str, Any]], name: str, nth: int = 0) -> dict[str, Any] | None:
    matches = [t for t in found if _same_name(name, t.get("transaction"))]
    return matches[nth] if len(matches) > nth else None


def transaction_rows(report: Report, observations: dict[str, Observation]) -> None:
    found = {c: transactions(observations[c]) for c in SENTRY_CONFIGS}
    seen: list[str] = []
    for key, subject, name, nth in TRANSACTION_VARIANTS:
        picked = {c: pick(found[c], name, nth) for c in SENTRY_CONFIGS}
        if picked[SENTRY] is None:
            raise RuntimeError(f"sentry-sdk alone sent no {subject}: the scenario broke")
        report.add(Row(TRANSACTIONS, subject, "sent", {
            c: Cell(PRESENT if t is not None else ABSENT) for c, t in picked.items()
        }, reference=(SENTRY,)))  # fmt: skip
        full = key in ("items", "standalone")
        paths = None if full else _delta(picked[SENTRY], seen)
        used = _doc_rows(report, TRANSACTIONS, subject, picked, paths)
        if key == "items":
            seen = used
            span_rows(report, SPANS_REQUEST, picked, roles_request)
        if key == "standalone":
            span_rows(report, SPANS_STANDALONE, picked, roles_standalone)
    otlp = observations[BRIDGE_OTLP]
    same_spans = {s.span_id for s in otlp.sentry_otlp_spans} == {
        s.span_id for s in otlp.jaeger_spans}  # fmt: skip
    report.add(Row(TRANSACTIONS, "all spans", "Sentry's OTLP endpoint gets the spans Jaeger gets",
                   {BRIDGE_OTLP: requirement_cell(same_spans and bool(otlp.jaeger_spans),
                                                  "different spans"),
                    BRIDGE_ENVELOPE: Cell(NA)},
                   requirement="one sampler for every sink (DESIGN)"))  # fmt: skip
