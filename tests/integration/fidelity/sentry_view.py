"""How Sentry reads spans that arrive on its OTLP endpoint, as transaction-shaped data.

In ``otlp`` mode the bridge sends no transaction envelopes: Sentry builds its view from the
OTLP spans. To compare that view with sentry-sdk's transactions field by field, each root
span and its descendants are read here into the shape of a transaction event.

The reading follows Relay's OTLP conversion (getsentry/relay, ``relay-spans/src/
v2_to_v1.rs``): ``sentry.op`` becomes the op, else it is derived (``http.request.method``
or ``http.method`` with the span kind -> ``http.server``/``http.client``/``http``;
``db.system``/``db.system.name`` -> ``db``; ``gen_ai.system`` -> ``gen_ai``; ``rpc.service``
-> ``rpc``; ``messaging.system`` -> ``message``; ``faas.trigger``; else ``default``);
``sentry.description`` becomes the description, else it is derived from the HTTP route or
URL, or the DB statement, else the span name; the status comes from the OTel status, then
``http.status_code``; every other attribute is span data. Span events are dropped (Sentry's
OTLP documentation). Fields Relay does not derive are read from the attribute names of
Sentry's conventions (getsentry/sentry-conventions): ``sentry.segment.name`` (transaction
name), ``sentry.span.source``, ``sentry.release``, ``sentry.environment``, ``user.id``,
``user.email``, ``user.ip_address``, ``user.name``, ``sentry.platform``, ``sentry.sdk.*``,
``sentry.module.<name>``. Request fields are read from the HTTP semantic conventions
(``http.request.method``/``http.method``, ``url.full``/``http.url``, ``url.query``,
``http.request.header.<name>``), and ``tags.<key>`` from the attribute ``<key>`` (or the
alias listed in ``TAG_ALIASES``). ``MAPPING_TABLE`` lists this for the generated document.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from tests.support.otlp_receiver import ReceivedSpan, descendants

#: A Sentry tag and the span attributes that carry the same information in OTLP.
TAG_ALIASES = {"tenant_id": ("tenant_id", "tenant.id")}

MAPPING_TABLE = (
    ("op", "`sentry.op`, else derived as Relay does (HTTP method + kind, `db.system`, ...)"),
    ("description", "`sentry.description`, else derived as Relay does (route/URL, statement)"),
    ("transaction", "`sentry.segment.name` / `sentry.transaction`, else the root's description"),
    ("transaction_info.source", "`sentry.span.source`"),
    ("release, environment", "`sentry.release`, `sentry.environment` (span or resource)"),
    ("user.*", "`user.id`, `user.email`, `user.ip_address`, `user.name`"),
    ("request.*", "`http.request.method`/`http.method`, `url.full`/`http.url`, `url.query`, "
     "`http.request.header.*`"),
    ("tags.<key>", "the attribute `<key>` (aliases: `tenant_id` = `tenant.id`)"),
    ("contexts.trace.status, span status", "OTel status, then `http.status_code`"),
    ("contexts.runtime", "resource `process.runtime.name`/`.version`/`.description`"),
    ("sdk, platform, modules", "`sentry.sdk.*`, `sentry.platform`, `sentry.module.*`"),
    ("span data", "every other attribute, resource attributes as `resource.<key>`"),
)  # fmt: skip

_HTTP_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    429: "resource_exhausted",
    499: "cancelled",
    500: "internal_error",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}


def _first(attributes: dict[str, Any], *names: str) -> Any:
    return next((attributes[n] for n in names if attributes.get(n) is not None), None)


def relay_op(span: ReceivedSpan) -> str:
    attributes = span.attributes
    if isinstance(attributes.get("sentry.op"), str):
        return str(attributes["sentry.op"])
    if "http.request.method" in attributes or "http.method" in attributes:
        return {"CLIENT": "http.client", "SERVER": "http.server"}.get(span.kind, "http")
    if "db.system" in attributes or "db.system.name" in attributes:
        return "db"
    for key, op in (
        ("gen_ai.system", "gen_ai"),
        ("rpc.service", "rpc"),
        ("messaging.system", "message"),
    ):
        if key in attributes:
            return op
    if isinstance(attributes.get("faas.trigger"), str):
        return str(attributes["faas.trigger"])
    return "default"


def _domain(host: str | None) -> str:
    """``url::Url::domain()``: the host name, or nothing for an IP address."""
    if not host:
        return ""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    return ""


def relay_description(span: ReceivedSpan) -> str:
    attributes = span.attributes
    if isinstance(attributes.get("sentry.description"), str):
        return str(attributes["sentry.description"])
    method = _first(attributes, "http.request.method", "http.method")
    if isinstance(method, str):
        path: str | None = None
        if span.kind == "SERVER":
            target = attributes.get("http.target")
            path = _first(attributes, "http.route", "url.path") or (
                str(target).split("?", 1)[0].split("#", 1)[0] if target else None
            )
        elif span.kind == "CLIENT":
            url = _first(attributes, "url.full", "http.url")
            if isinstance(url, str):
                parts = urlsplit(url)
                path = f"{parts.scheme}://{_domain(parts.hostname)}{parts.path}"
        return f"{method} {path}" if path else method
    is_cache = str(attributes.get("sentry.op", "")).startswith("cache.")
    if not is_cache and _first(attributes, "db.system", "db.system.name") is not None:
        statement = _first(attributes, "db.query.text", "db.statement")
        if isinstance(statement, str):
            return statement
    return span.name


def relay_status(span: ReceivedSpan) -> str:
    if span.status_code in ("UNSET", "OK"):
        return "ok"
    code = _first(span.attributes, "http.status_code", "http.response.status_code")
    if isinstance(code, int) and code in _HTTP_STATUS:
        return _HTTP_STATUS[code]
    return "unknown"


def _span_data(span: ReceivedSpan) -> dict[str, Any]:
    data = {
        k: v for k, v in span.attributes.items() if k not in ("sentry.op", "sentry.description")
    }
    data.update({f"resource.{k}": v for k, v in span.resource_attributes.items()})
    return data


def _tags(attributes: dict[str, Any]) -> dict[str, Any]:
    tags = dict(attributes)
    for tag, names in TAG_ALIASES.items():
        value = _first(attributes, *names)
        if value is not None:
            tags[tag] = value
    return tags


def sentry_span(span: ReceivedSpan) -> dict[str, Any]:
    """One child span as Sentry shows it."""
    return {
        "op": relay_op(span),
        "description": relay_description(span),
        "status": relay_status(span),
        "origin": span.attributes.get("sentry.origin", "auto.otlp.spans"),
        "data": _span_data(span),
        "tags": _tags(span.attributes),
        "start_timestamp": span.start_time_unix_nano,
    }


def _request(attributes: dict[str, Any]) -> dict[str, Any]:
    url = _first(attributes, "url.full", "http.url")
    query = attributes.get("url.query")
    if query is None and isinstance(url, str):
        query = urlsplit(url).query or None
    if query is None and isinstance(attributes.get("http.target"), str):
        query = urlsplit(str(attributes["http.target"])).query or None
    prefix = "http.request.header."
    headers = {k[len(prefix) :]: v for k, v in attributes.items() if k.startswith(prefix)}
    return {
        "method": _first(attributes, "http.request.method", "http.method"),
        "url": str(url).split("?", 1)[0] if isinstance(url, str) else None,
        "query_string": query,
        "headers": headers or None,
    }


def sentry_transaction(root: ReceivedSpan, trace: list[ReceivedSpan]) -> dict[str, Any]:
    """A root span and the spans under it, read as a Sentry transaction."""
    attributes = root.attributes
    both = {**root.resource_attributes, **attributes}
    modules = {k.removeprefix("sentry.module."): v for k, v in both.items()
               if k.startswith("sentry.module.")}  # fmt: skip
    resource = root.resource_attributes
    children = sorted(descendants(root, trace), key=lambda s: s.start_time_unix_nano)
    return {
        "transaction": _first(both, "sentry.segment.name", "sentry.transaction")
        or relay_description(root),
        "transaction_info": {"source": _first(both, "sentry.span.source")},
        "contexts": {
            "trace": {
                "trace_id": root.trace_id,
                "span_id": root.span_id,
                "parent_span_id": root.parent_span_id,
                "op": relay_op(root),
                "status": relay_status(root),
                "origin": attributes.get("sentry.origin", "auto.otlp.spans"),
                "data": _span_data(root),
            },
            "response": {
                "status_code": _first(attributes, "http.response.status_code", "http.status_code"),
            },
            "runtime": {
                "name": resource.get("process.runtime.name"),
                "version": resource.get("process.runtime.version"),
                "build": resource.get("process.runtime.description"),
            },
        },
        "tags": _tags(attributes),
        "user": {
            "id": _first(both, "user.id"),
            "email": _first(both, "user.email"),
            "ip_address": _first(both, "user.ip_address"),
            "username": _first(both, "user.name"),
        },
        "request": _request(attributes),
        "release": _first(both, "sentry.release"),
        "environment": _first(both, "sentry.environment"),
        "server_name": resource.get("host.name"),
        "platform": _first(both, "sentry.platform"),
        "sdk": {
            "name": _first(both, "sentry.sdk.name"),
            "version": _first(both, "sentry.sdk.version"),
            "integrations": _first(both, "sentry.sdk.integrations"),
        },
        "extra": {"sys.argv": resource.get("process.command_args")},
        "modules": modules or None,
        "spans": [sentry_span(s) for s in children],
        "start_timestamp": root.start_time_unix_nano,
    }


def otlp_transactions(spans: list[ReceivedSpan]) -> list[dict[str, Any]]:
    """Every root span (Relay makes a segment of each) as a transaction, oldest first."""
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    roots = sorted((s for s in spans if s.parent_span_id is None),
                   key=lambda s: s.start_time_unix_nano)  # fmt: skip
    return [sentry_transaction(root, by_trace[root.trace_id]) for root in roots]
