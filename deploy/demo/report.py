"""Follow one trace id through every local sink and say where it is (and is not).

Pure functions over the files `python -m demo` leaves in its output directory: the Sentry
events file, the OTLP/JSON span file, the `/metrics` scrapes and the services' logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPAN_KINDS = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}
STATUS_ERROR = 2


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    documents = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            documents.append(json.loads(line))
    return documents


# -- Sentry ----------------------------------------------------------------------------


def sentry_items(
    lines: list[dict[str, Any]], trace_id: str, item_type: str
) -> list[dict[str, Any]]:
    return [
        line["payload"]
        for line in lines
        if line.get("type") == item_type
        and line.get("payload", {}).get("contexts", {}).get("trace", {}).get("trace_id") == trace_id
    ]


def event_title(event: dict[str, Any]) -> str:
    """The issue title Sentry shows: `Type: value` of the outermost exception, else the message."""
    values = event.get("exception", {}).get("values") or []
    if values:
        last = values[-1]
        return f"{last.get('type', 'Error')}: {last.get('value', '')}".rstrip(": ")
    message = event.get("message") or event.get("logentry", {}).get("message")
    return str(message or "<no title>")


def _pairs(value: Any) -> str:
    items = value.items() if isinstance(value, dict) else (value or [])
    return ", ".join(f"{key}={val}" for key, val in items) or "-"


def render_sentry_event(event: dict[str, Any], transactions: list[dict[str, Any]]) -> list[str]:
    trace = event.get("contexts", {}).get("trace", {})
    lines = [
        f"  event        {event.get('event_id')}",
        f"  title        {event_title(event)}",
        f"  level        {event.get('level')}",
        f"  release      {event.get('release')}   environment {event.get('environment')}",
        f"  transaction  {event.get('transaction', '-')}",
        f"  tags         {_pairs(event.get('tags'))}",
        f"  user         {_pairs(event.get('user'))}",
        f"  user email   {(event.get('user') or {}).get('email', '-')}",
        f"  trace        trace_id={trace.get('trace_id')} span_id={trace.get('span_id')}",
    ]
    for transaction in transactions:
        lines.append(
            f"  performance  transaction {transaction.get('transaction')!r} with "
            f"{len(transaction.get('spans') or [])} spans"
        )
    return lines


# -- spans -----------------------------------------------------------------------------


@dataclass
class SpanRow:
    service: str
    name: str
    kind: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    error: bool
    http_status: str | None
    # GenAI spans: "in=13 out=7 tokens" (gen_ai.usage.*), the agent -> LLM -> tool view.
    tokens: str | None = None
    # The op Sentry shows for the span: ``sentry.op``, else what Relay derives.
    op: str = "default"
    children: list[SpanRow] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _attribute(attributes: list[dict[str, Any]], *keys: str) -> str | None:
    for attribute in attributes:
        if attribute.get("key") in keys:
            value = attribute.get("value", {})
            for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
                if kind in value:
                    return str(value[kind])
    return None


def spans_of_trace(requests: list[dict[str, Any]], trace_id: str) -> list[SpanRow]:
    rows = []
    for request in requests:
        for resource_spans in request.get("resourceSpans", []):
            resource_attrs = resource_spans.get("resource", {}).get("attributes", [])
            service = _attribute(resource_attrs, "service.name") or "?"
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    if span.get("traceId") != trace_id:
                        continue
                    attrs = span.get("attributes", [])
                    rows.append(
                        SpanRow(
                            service=service,
                            name=span.get("name", "?"),
                            kind=SPAN_KINDS.get(int(span.get("kind", 0)), "?"),
                            span_id=span.get("spanId", ""),
                            parent_id=span.get("parentSpanId", ""),
                            start_ns=int(span.get("startTimeUnixNano", 0)),
                            end_ns=int(span.get("endTimeUnixNano", 0)),
                            error=int(span.get("status", {}).get("code", 0)) == STATUS_ERROR,
                            http_status=_attribute(
                                attrs, "http.response.status_code", "http.status_code"
                            ),
                            tokens=_tokens(attrs),
                            op=sentry_op(attrs, int(span.get("kind", 0))),
                        )
                    )
    return rows


def sentry_op(attributes: list[dict[str, Any]], kind: int) -> str:
    """The span's op in Sentry: the ``sentry.op`` attribute, else Relay's derivation
    (``relay-spans``: HTTP method and kind, ``db.system``, ``gen_ai.operation.name``)."""
    explicit = _attribute(attributes, "sentry.op")
    if explicit:
        return explicit
    if _attribute(attributes, "http.request.method", "http.method"):
        return {2: "http.server", 3: "http.client"}.get(kind, "http")
    if _attribute(attributes, "db.system", "db.system.name"):
        return "db"
    operation = _attribute(attributes, "gen_ai.operation.name")
    return f"gen_ai.{operation}" if operation else "default"


def _tokens(attributes: list[dict[str, Any]]) -> str | None:
    tokens_in = _attribute(attributes, "gen_ai.usage.input_tokens")
    tokens_out = _attribute(attributes, "gen_ai.usage.output_tokens")
    if tokens_in is None and tokens_out is None:
        return None
    return f"tokens in={tokens_in or 0} out={tokens_out or 0}"


def render_span_tree(rows: list[SpanRow], max_lines: int = 60) -> list[str]:
    by_id = {row.span_id: row for row in rows}
    roots = []
    for row in sorted(rows, key=lambda r: r.start_ns):
        parent = by_id.get(row.parent_id)
        if parent is None:
            roots.append(row)
        else:
            parent.children.append(row)
    if not roots:
        return []
    origin = min(row.start_ns for row in rows)
    width = max(len(row.service) for row in rows)
    lines: list[str] = []

    def walk(row: SpanRow, depth: int) -> None:
        flags = " ".join(
            part
            for part in (row.http_status or "", row.tokens or "", "ERROR" if row.error else "")
            if part
        )
        lines.append(
            f"  {row.service:<{width}}  {'  ' * depth}{row.name}  [{row.kind} op={row.op}]  "
            f"+{(row.start_ns - origin) / 1e6:.1f} ms  {row.duration_ms:.1f} ms  {flags}".rstrip()
        )
        for child in row.children:
            walk(child, depth + 1)

    for root in roots:
        if root.parent_id:
            lines.append(f"  (parent {root.parent_id}: the caller's traceparent, not recorded)")
        walk(root, 0)
    if len(lines) > max_lines:
        hidden = len(lines) - max_lines
        lines = [*lines[:max_lines], f"  ... {hidden} more spans"]
    return lines


# -- metrics and logs ------------------------------------------------------------------


def exemplar_lines(metrics_text: str, trace_id: str) -> list[str]:
    needle = f'trace_id="{trace_id}"'
    return [line for line in metrics_text.splitlines() if needle in line]


def render_log_line(line: str, limit: int = 220) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return line[:limit]
    head = " ".join(
        str(record[key])
        for key in ("timestamp", "time", "level", "levelname", "logger", "name")
        if key in record
    )
    message = record.get("message") or record.get("msg") or record.get("event") or ""
    text = f"{head}  {message}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def log_lines_with(path: Path, trace_id: str) -> list[str]:
    if not path.exists():
        return []
    return [
        line
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if trace_id in line
    ]


def files_containing(paths: list[Path], secrets: list[str]) -> list[str]:
    """Files in which any of `secrets` appears verbatim (the secrets are not echoed)."""
    leaks = []
    for path in paths:
        if path.exists():
            content = path.read_text(encoding="utf-8", errors="replace")
            if any(secret in content for secret in secrets):
                leaks.append(path.name)
    return leaks
