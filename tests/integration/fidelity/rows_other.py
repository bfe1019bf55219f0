"""Rows for release health (sessions), outgoing trace headers and request isolation."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.integration.fidelity.app import BRIDGE_ENVELOPE, BRIDGE_OTLP, OTEL, SENTRY
from tests.integration.fidelity.fields import compared_cell, requirement_cell
from tests.integration.fidelity.model import ABSENT, PRESENT, WRONG, Cell, Report, Row
from tests.integration.fidelity.rows_jaeger import server_span
from tests.integration.fidelity.rows_sentry import SENTRY_CONFIGS, pick, request_trace, transactions
from tests.integration.fidelity.run import Observation

SESSIONS = "Sentry: release health (sessions)"
PROPAGATION = "Outgoing HTTPX call: trace headers"
ISOLATION = "Isolation: one request's data stays on it"
ALL = (OTEL, SENTRY, BRIDGE_OTLP, BRIDGE_ENVELOPE)
STATUSES = ("exited", "errored", "crashed", "abnormal")


def session_totals(observation: Observation) -> tuple[Counter[str], dict[str, Any]] | None:
    """Session outcomes summed over ``sessions`` aggregates and single ``session`` updates
    (Relay takes both); None when the configuration sent neither."""
    aggregates = observation.items("sessions")
    singles = observation.items("session")
    if not aggregates and not singles:
        return None
    totals: Counter[str] = Counter()
    attrs: dict[str, Any] = {}
    for item in aggregates:
        attrs.update(item.get("attrs") or {})
        for bucket in item.get("aggregates") or []:
            for status in STATUSES:
                totals[status] += int(bucket.get(status, 0))
    for item in singles:
        attrs.update(item.get("attrs") or {})
        status = item.get("status")
        if status == "exited" and item.get("errors"):
            totals["errored"] += 1
        elif status in STATUSES:
            totals[str(status)] += 1
    return totals, attrs


def session_rows(report: Report, observations: dict[str, Observation]) -> None:
    subject = "request-mode session aggregates"
    found = {c: session_totals(observations[c]) for c in SENTRY_CONFIGS}
    reference = found[SENTRY]
    if reference is None:
        raise RuntimeError("sentry-sdk alone sent no sessions: the scenario broke")
    report.add(Row(SESSIONS, subject, "sessions sent", {
        c: Cell(PRESENT if f is not None else ABSENT) for c, f in found.items()
    }, reference=(SENTRY,)))  # fmt: skip
    for attr in sorted(reference[1]):
        report.add(Row(SESSIONS, subject, f"`attrs.{attr}`", {
            c: compared_cell([f[1][attr]] if f and attr in f[1] else None,
                             None if c == SENTRY else [reference[1][attr]])
            for c, f in found.items()
        }, reference=(SENTRY,)))  # fmt: skip
    for status in STATUSES:
        expected = reference[0][status]
        if not expected:
            continue
        cells: dict[str, Cell] = {}
        for config, totals in found.items():
            count = totals[0][status] if totals else 0
            state = PRESENT if count == expected else (WRONG if count else ABSENT)
            cells[config] = Cell(state, str(count))
        report.add(Row(SESSIONS, subject, f"`{status}` sessions", cells, reference=(SENTRY,)))


def _downstream_headers(observation: Observation) -> dict[str, str]:
    return next((h for path, h in observation.downstream if path.startswith("/prices/42")), {})


def _header_traces(headers: dict[str, str]) -> dict[str, str]:
    traces: dict[str, str] = {}
    if "traceparent" in headers:
        parts = headers["traceparent"].split("-")
        if len(parts) == 4:
            traces["traceparent"] = parts[1]
    if "sentry-trace" in headers:
        traces["sentry-trace"] = headers["sentry-trace"].split("-")[0]
    for entry in headers.get("baggage", "").split(","):
        name, _, value = entry.strip().partition("=")
        if name == "sentry-trace_id":
            traces["baggage"] = value
    return traces


def propagation_rows(report: Report, observations: dict[str, Observation]) -> None:
    subject = "call made while serving `GET /items/{item_id}`"
    headers = {c: _downstream_headers(observations[c]) for c in ALL}
    traces = {c: _header_traces(h) for c, h in headers.items()}
    for name in ("traceparent", "sentry-trace", "baggage"):
        report.add(Row(PROPAGATION, subject, f"`{name}` header", {
            c: Cell(PRESENT if name in h else ABSENT) for c, h in headers.items()
        }, reference=(OTEL, SENTRY)))  # fmt: skip
    report.add(Row(PROPAGATION, subject, "`baggage` carries `sentry-trace_id`", {
        c: Cell(PRESENT if "baggage" in t else ABSENT) for c, t in traces.items()
    }, reference=(OTEL, SENTRY)))  # fmt: skip
    cells: dict[str, Cell] = {}
    for config, found in traces.items():
        request = request_trace(observations[config], "items")
        agree = set(found.values()) == {request} and len(found) == 3
        cells[config] = requirement_cell(
            agree,
            f"{len(found)} of 3, "
            + ("same trace" if set(found.values()) == {request} else "other trace"),
        )
    report.add(
        Row(
            PROPAGATION,
            subject,
            "all three sent, with the request's trace id",
            cells,
            requirement="headers that agree (DESIGN, One trace context)",
        )
    )


def isolation_rows(report: Report, observations: dict[str, Observation]) -> None:
    subject = "request without a user, after requests with one"
    anonymous = {c: pick(transactions(observations[c]), "/items/{item_id}", 1)
                 for c in SENTRY_CONFIGS}  # fmt: skip
    report.add(Row(ISOLATION, subject, "its transaction has no `user`", {
        c: requirement_cell(t is not None and not any((t.get("user") or {}).values()),
                            "user of another request" if t else "no transaction")
        for c, t in anonymous.items()
    }, requirement="user context is per request (DESIGN)"))  # fmt: skip
    report.add(Row(ISOLATION, subject, "its transaction has no `tenant_id` tag", {
        c: requirement_cell(t is not None and "tenant_id" not in (t.get("tags") or {}),
                            "tag of another request" if t else "no transaction")
        for c, t in anonymous.items()
    }, requirement="tags are per request (issue 11, item 6)"))  # fmt: skip
    spans = {c: server_span(observations[c], "/items/{item_id}", 1)
             for c in (OTEL, BRIDGE_OTLP, BRIDGE_ENVELOPE)}  # fmt: skip
    report.add(Row(ISOLATION, subject, "its server span (Jaeger) has no `enduser.id`", {
        c: requirement_cell(s is not None and "enduser.id" not in s.attributes,
                            "user of another request" if s else "no span")
        for c, s in spans.items()
    }, requirement="user context is per request (DESIGN)"))  # fmt: skip
