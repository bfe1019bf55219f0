"""Scrubbing by shape: SQL literals, database error detail, sensitive route parameters, the
wider credential-name list, free text after a sensitive word, secrets in URL paths and the
end user's address. And what must survive it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from telemetry.scrubbing import FILTERED, RouteSecretsMiddleware, ScrubbingPolicy, scrub_sql
from telemetry.sentry.scrubbing import EventScrubber
from telemetry.tracing.scrubbing import ScrubbingSpanExporter
from tests.scrubbing.corpus import (
    DATABASE_ERRORS,
    FREE_TEXT_PROSE,
    FREE_TEXT_SECRETS,
    SECRET,
    SQL_STATEMENTS,
    URL_PATH_SECRETS,
)

POLICY = ScrubbingPolicy.default()
EVENTS = EventScrubber(POLICY)


@pytest.mark.parametrize(
    ("statement", "expected"),
    SQL_STATEMENTS,
)
def test_sql_literals_replaced_shape_kept(statement: str, expected: str | None) -> None:
    assert scrub_sql(statement) == (statement if expected is None else expected)


@pytest.mark.parametrize(
    "text",
    DATABASE_ERRORS,
)
def test_database_error_values_removed(text: str) -> None:
    out = POLICY.scrub_text(text)
    assert SECRET not in out
    assert FILTERED in out or "?" in out


def test_database_error_keeps_the_columns() -> None:
    out = POLICY.scrub_text(f"DETAIL:  Key (reset_token)=({SECRET}) already exists.")
    assert out == "DETAIL:  Key (reset_token)=([Filtered]) already exists."


@pytest.mark.parametrize(
    "name",
    [
        "sig",
        "code",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "id_token_hint",
        "Authentication",
        "X-Signature",
        "X-Hub-Signature-256",
        "Stripe-Signature",
        "X-Slack-Signature",
        "X-Access-Key",
        "X-Credentials",
        "signing_key",
        "hmac_key",
        "otp",
        "client_key",
        "recovery_codes",
        "X-Goog-Signature",
        "AWSAccessKeyId",
        "mysql_pwd",
        "connect.sid",
        "PHPSESSID",
    ],
)
def test_wider_credential_names(name: str) -> None:
    assert POLICY.is_sensitive_name(name)
    assert SECRET not in POLICY.scrub_text(f"https://h/p?{name}={SECRET}&page=2")
    assert POLICY.scrub_value({name: SECRET}) == {name: FILTERED}


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "input_tokens",
        "gen_ai.usage.output_tokens",
        "trace_id",
        "http.route",
        "error.code",
        "rpc.grpc.status_code",
        "code.function",
        "design",
    ],
)
def test_not_over_scrubbed(name: str) -> None:
    assert not POLICY.is_sensitive_name(name)


def test_short_status_codes_survive() -> None:
    assert POLICY.scrub_text("upstream failed, code: 503") == "upstream failed, code: 503"
    assert SECRET not in POLICY.scrub_text(f"oauth callback code={SECRET}")


@pytest.mark.parametrize(
    "text",
    FREE_TEXT_SECRETS,
)
def test_free_text_after_a_sensitive_word(text: str) -> None:
    out = POLICY.scrub_text(text)
    assert FILTERED in out, out


@pytest.mark.parametrize(
    "text",
    FREE_TEXT_PROSE,
)
def test_free_text_prose_kept(text: str) -> None:
    assert POLICY.scrub_text(text) == text


@pytest.mark.parametrize(
    ("text", "secret"),
    URL_PATH_SECRETS,
)
def test_secrets_in_url_paths(text: str, secret: str) -> None:
    out = POLICY.scrub_text(text)
    assert secret not in out
    assert (
        "/sendMessage" in out
        or "hooks.slack.com" in out
        or "/api/webhooks/" in out
        or ("/webhook/" in out)
    )


def test_http_breadcrumb_url_path_scrubbed() -> None:
    crumb = {
        "category": "httplib",
        "data": {
            "url": "https://api.telegram.org/bot123456789:AAEabcdefghijklmnopqrstuvwxyz/getMe"
        },
    }
    assert "AAEabcdef" not in json.dumps(EVENTS.scrub_breadcrumb(crumb))


def test_query_breadcrumb_statement_literals() -> None:
    crumb = {"category": "query", "message": f"UPDATE u SET pin = '{SECRET}' WHERE id = 3"}
    out = EVENTS.scrub_breadcrumb(crumb)
    assert out["message"] == "UPDATE u SET pin = ? WHERE id = 3"


def test_transaction_db_spans_and_client_address() -> None:
    event: dict[str, Any] = {
        "type": "transaction",
        "contexts": {
            "trace": {
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "data": {"client.address": "203.0.113.7", "net.peer.ip": "203.0.113.7", "x": 1},
            }
        },
        "spans": [{"op": "db", "description": f"SELECT * FROM t WHERE v = '{SECRET}'"}],
        "request": {
            "headers": {"X-Forwarded-For": "203.0.113.7", "Host": "h"},
            "env": {"REMOTE_ADDR": "203.0.113.7"},
        },
    }
    out = EVENTS.scrub_event(event)
    text = json.dumps(out)
    assert SECRET not in text and "203.0.113.7" not in text
    assert out["contexts"]["trace"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert out["contexts"]["trace"]["data"]["x"] == 1


def test_asgi_client_in_frame_locals() -> None:
    local_scope = {"type": "http", "client": ["203.0.113.7", 51234], "path": "/a"}
    assert "203.0.113.7" not in json.dumps(POLICY.scrub_value(local_scope))
    keep = ScrubbingPolicy.from_lists(keep_client_ip=True)
    assert keep.scrub_value(local_scope) is local_scope
    assert not keep.is_sensitive_name("X-Forwarded-For")


def _spans(policy: ScrubbingPolicy, kind: SpanKind, attributes: dict[str, Any]) -> dict[str, Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory, policy)))
    with provider.get_tracer("t").start_as_current_span("span", kind=kind, attributes=attributes):
        pass
    provider.shutdown()
    [span] = memory.get_finished_spans()
    return dict(span.attributes or {})


def test_server_span_client_address_dropped_client_span_peer_kept() -> None:
    server = _spans(
        POLICY,
        SpanKind.SERVER,
        {"client.address": "203.0.113.7", "net.peer.ip": "203.0.113.7", "http.method": "GET"},
    )
    assert server == {"http.method": "GET"}
    client = _spans(POLICY, SpanKind.CLIENT, {"net.peer.ip": "10.0.0.5", "server.address": "api"})
    assert client == {"net.peer.ip": "10.0.0.5", "server.address": "api"}
    kept = _spans(
        ScrubbingPolicy.from_lists(keep_client_ip=True),
        SpanKind.SERVER,
        {"client.address": "1.2.3.4"},
    )
    assert kept == {"client.address": "1.2.3.4"}


def test_span_sensitive_route_parameter() -> None:
    attrs = _spans(
        POLICY,
        SpanKind.SERVER,
        {
            "http.route": "/reset-password/{token}",
            "http.target": f"/reset-password/{SECRET}?next=/home",
            "url.full": f"http://h/api/reset-password/{SECRET}",
            "http.url": f"http://h/reset-password/{SECRET}",
            "http.request.header.referer": f"http://h/reset-password/{SECRET}",
        },
    )
    assert SECRET not in json.dumps(attrs)
    assert attrs["http.route"] == "/reset-password/{token}"
    assert attrs["http.target"] == "/reset-password/[Filtered]?next=/home"


def test_route_parameter_not_sensitive_kept() -> None:
    attrs = _spans(
        POLICY,
        SpanKind.SERVER,
        {"http.route": "/api/v1/agents/{agent_id}", "http.target": "/api/v1/agents/a1b2c3d4e5"},
    )
    assert attrs["http.target"] == "/api/v1/agents/a1b2c3d4e5"


def test_request_context_route_secrets_in_logs_and_events() -> None:
    """Inside a request matched to a sensitive route, its value goes from every text."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["path_params"] = {"token": SECRET, "user_id": "42"}  # what the router sets
        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", f"/reset-password/{SECRET}", "1.1", 200),
            None,
        )
        seen["log"] = POLICY.scrub_text(record.getMessage())
        seen["event"] = EVENTS.scrub_event(
            {"request": {"url": f"http://h/reset-password/{SECRET}"}, "user": {"id": "42"}}
        )

    scope = {"type": "http", "path": f"/reset-password/{SECRET}"}
    asyncio.run(RouteSecretsMiddleware(app)(scope, None, None))
    assert SECRET not in seen["log"] and "/reset-password/[Filtered]" in seen["log"]
    assert SECRET not in json.dumps(seen["event"])
    assert seen["event"]["user"] == {"id": "42"}  # a non-sensitive parameter stays
    # Outside the request, nothing is remembered.
    assert POLICY.scrub_text(f"/reset-password/{SECRET}") == f"/reset-password/{SECRET}"
