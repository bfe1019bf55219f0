"""The scrubbing policy: every place a secret can hide in a Sentry event, a span, a label."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport
from sentry_sdk.utils import AnnotatedValue

from telemetry.scrubbing import FILTERED, ScrubbingPolicy
from telemetry.sentry.scrubbing import EventScrubber
from telemetry.tracing.conventions import derived_attributes
from telemetry.tracing.scrubbing import ScrubbingSpanExporter, scrub_span
from tests.scrubbing.corpus import (
    CLEAN_TEXT,
    LUHN_VALID_CARDS,
    ROUTE,
    SECRETS_IN_TEXT,
    SPAN_ID,
    TRACE_ID,
)

POLICY = ScrubbingPolicy.default()
EVENTS = EventScrubber(POLICY)
PARENT_ID = "00f067aa0ba902b7"
VISA = "4111 1111 1111 1111"


def dumped(value: Any) -> str:
    return json.dumps(value, default=repr)


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"leaked {leaked} in {text[:2000]}"


# -- free text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    SECRETS_IN_TEXT,
)
def test_secrets_in_text_are_filtered(text: str, expected: str) -> None:
    assert POLICY.scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    CLEAN_TEXT,
)
def test_clean_text_is_returned_unchanged(text: str) -> None:
    assert POLICY.scrub_text(text) is text


@pytest.mark.parametrize(
    "name",
    [
        "API-Key",
        "x_api_key",
        "ApiKey",
        "X-API-KEY",
        "Set-Cookie",
        "DB_PASSWORD",
        "github_token",
        "Client-Secret",
        "passwd",
    ],
)
def test_name_variants_are_sensitive(name: str) -> None:
    assert POLICY.is_sensitive_name(name)
    assert POLICY.scrub_text(f"{name}=v4lue") == f"{name}=[Filtered]"


@pytest.mark.parametrize(
    "name",
    ["max_tokens", "gen_ai.usage.input_tokens", "http.route", "user_id", "status", "trace_id"],
)
def test_ordinary_names_are_not_sensitive(name: str) -> None:
    assert not POLICY.is_sensitive_name(name)


@pytest.mark.parametrize("number", LUHN_VALID_CARDS)
def test_luhn_valid_cards_are_filtered(number: str) -> None:
    assert POLICY.scrub_text(f"card {number}.") == "card [Filtered]."


def test_luhn_invalid_and_hex_digits_survive() -> None:
    for text in ("4111111111111112", "1234567890123", f"{TRACE_ID}", "ts 1732790000123456789"):
        assert POLICY.scrub_text(text) == text


def test_replacement_never_echoes_part_of_the_secret() -> None:
    secret = "Zq8-very-long-secret-value-Xy"
    for text in (
        f"password={secret}",
        f'"api_key": "{secret}"',
        f"Bearer {secret}",
        f"https://bob:{secret}@host/",
        f"Authorization: Digest {secret}",
    ):
        out = POLICY.scrub_text(text)
        assert FILTERED in out
        assert not any(secret[i : i + 4] in out for i in range(len(secret) - 3)), out


def test_long_strings_are_truncated_without_splitting_a_secret() -> None:
    policy = ScrubbingPolicy(max_length=100)
    text = "a" * 95 + " password=hunter2-long-secret " + "b" * 5000
    out = policy.scrub_text(text)
    assert len(out) < 150 and out.endswith(f"[truncated, {len(text)} chars]")
    assert "hunter" not in out
    tail = policy.scrub_text("x" * 5000 + "ValueError: boom", tail=True)
    assert tail.endswith("ValueError: boom") and tail.startswith("[truncated")


def test_extend_and_from_lists() -> None:
    policy = ScrubbingPolicy.default().extend(names=["tenant_ref"], patterns=[r"EMP-\d{6}"])
    assert policy.scrub_text("tenant-ref=t9 employee EMP-123456") == (
        "tenant-ref=[Filtered] employee [Filtered]"
    )
    assert policy.scrub_text("password=x") == "password=[Filtered]"
    from_env = ScrubbingPolicy.from_lists(["ssn"], [r"\bACME-[0-9a-f]{8}\b"])
    assert from_env.scrub_value({"SSN": "123-45-6789", "password": "pw"}) == {
        "SSN": FILTERED,
        "password": FILTERED,
    }
    assert from_env.scrub_text("ref ACME-deadbeef") == "ref [Filtered]"
    only = ScrubbingPolicy.from_lists(["pin"], replace_defaults=True)
    assert only.scrub_value({"pin": "1234", "password": "kept"}) == {
        "pin": FILTERED,
        "password": "kept",
    }
    with pytest.raises(ValueError, match="invalid scrub pattern"):
        ScrubbingPolicy.from_lists(patterns=["(unclosed"])


def test_label_values_are_scrubbed_and_bounded() -> None:
    assert POLICY.scrub_label_value("/x?token=abc") == "/x?token=[Filtered]"
    assert len(POLICY.scrub_label_value("a" * 5000)) <= 260
    assert POLICY.scrub_label_value(ROUTE) is ROUTE
    assert POLICY.scrub_text("password=x") == "password=[Filtered]"


# -- Sentry events ------------------------------------------------------------------


def planted_event() -> tuple[dict[str, Any], list[str]]:
    secrets = [f"S3CRET{i:02d}x" for i in range(40)]
    s = iter(secrets)
    split_secret = secrets[39]  # spread over logentry params: "%s=%s" % ("password", it)
    event: dict[str, Any] = {
        "event_id": "e" * 32,
        "level": "error",
        "transaction": ROUTE,
        "request": {
            "url": f"https://bob:{next(s)}@api.example.com/agents?token={next(s)}&page=2",
            "method": "POST",
            "query_string": f"token={next(s)}&page=2",
            "headers": {
                "Authorization": f"Bearer {next(s)}",
                "X-Api-Key": next(s),
                "Cookie": f"sid={next(s)}",
                "Content-Type": "application/json",
            },
            "cookies": {"sessionid": next(s)},
            "data": {
                "user": {"profile": {"password": next(s)}, "cards": [VISA]},
                "notes": f"my api_key={next(s)} ok",
            },
            "env": {"REMOTE_ADDR": "10.0.0.1", "SECRET_KEY": next(s)},
        },
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": f"login failed for password={next(s)}",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "handler",
                                "vars": {
                                    "payload": {"deep": {"deeper": {"refresh_token": next(s)}}},
                                    "dsn": f"https://{next(s)}@o1.ingest.sentry.io/1",
                                    "creds": f"Creds(client_secret='{next(s)}')",
                                    "argv": ["app", "--password", next(s)],
                                },
                            }
                        ]
                    },
                }
            ]
        },
        "logentry": {
            "message": "auth %s=%s",
            "params": ["password", split_secret],
            "formatted": f"auth password={split_secret}",
        },
        "breadcrumbs": {
            "values": [
                {
                    "type": "http",
                    "category": "httplib",
                    "data": {
                        "url": f"https://x.test/cb?code=1&access_token={next(s)}",
                        "http.query": f"api_key={next(s)}",
                    },
                },
                {
                    "category": "log",
                    "message": f"Authorization: Bearer {next(s)}",
                    "data": {"password": next(s)},
                },
                {
                    "category": "query",
                    "message": f"UPDATE users SET nickname = '{next(s)}' WHERE id = 7",
                    "data": {"db.system": "postgresql"},
                },
            ]
        },
        "extra": {"config": {"db_password": next(s)}, "raw": f"token={next(s)}".encode()},
        "contexts": {
            "trace": {
                "trace_id": TRACE_ID,
                "span_id": SPAN_ID,
                "parent_span_id": PARENT_ID,
                "op": "http.server",
                "status": "internal_error",
            },
            "otel": {
                "attributes": {
                    "http.route": ROUTE,
                    "http.response.status_code": 500,
                    "url.full": f"https://h/a?token={next(s)}",
                    "http.request.header.authorization": [f"Bearer {next(s)}"],
                },
                "resource": {"service.name": "svc", "deploy.secret": next(s)},
            },
        },
        "tags": {"api_key": next(s), "route": ROUTE},
        "user": {"id": "u-1", "ip_address": "203.0.113.9", "email": "bob@example.com"},
        "spans": [
            {
                "trace_id": TRACE_ID,
                "span_id": SPAN_ID,
                "op": "db",
                "description": f"UPDATE users SET password = '{next(s)}'",
                "data": {
                    "db.statement": f"SELECT 1 WHERE token = '{next(s)}'",
                    "http.status_code": 200,
                    "url": f"http://u:{next(s)}@h/",
                },
            }
        ],
        "message": f"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.{next(s)}",
        "annotated": AnnotatedValue(f"password={next(s)}", {"rem": [["!x", "s"]]}),
    }
    used = secrets[: secrets.index(next(s))]
    return event, [*used, split_secret, "203.0.113.9", "bob@example.com", "10.0.0.1", "1111 1111"]


def test_scrub_event_removes_every_planted_secret_and_keeps_ids() -> None:
    event, secrets = planted_event()
    out = EVENTS.scrub_event(event, {})
    text = dumped(out)
    assert_no_secret(text, secrets)
    assert out["contexts"]["trace"]["trace_id"] == TRACE_ID
    assert out["contexts"]["trace"]["span_id"] == SPAN_ID
    assert out["contexts"]["trace"]["parent_span_id"] == PARENT_ID
    assert out["contexts"]["otel"]["attributes"]["http.route"] == ROUTE
    assert out["contexts"]["otel"]["attributes"]["http.response.status_code"] == 500
    assert out["spans"][0]["span_id"] == SPAN_ID
    assert out["spans"][0]["data"]["http.status_code"] == 200
    assert out["transaction"] == ROUTE and out["tags"]["route"] == ROUTE
    assert out["request"]["headers"]["Content-Type"] == "application/json"
    assert out["request"]["query_string"] == "token=[Filtered]&page=2"
    assert "ip_address" not in out["user"] and out["user"]["id"] == "u-1"
    assert out["logentry"]["params"] == ["password", FILTERED]


def test_user_email_is_kept_only_when_the_policy_says_so() -> None:
    event = {"user": {"id": "1", "email": "a@b.example", "ip_address": "1.2.3.4"}}
    keep = EventScrubber(ScrubbingPolicy(keep_user_email=True)).scrub_event(event)
    assert keep["user"] == {"id": "1", "email": "a@b.example"}
    assert EVENTS.scrub_event(event)["user"] == {"id": "1", "email": FILTERED}


def test_query_string_list_form_and_cookie_string() -> None:
    event = {
        "request": {
            "query_string": [["token", "q1"], ["page", "2"]],
            "cookies": "sid=c1; theme=dark",
            "data": "user=bob&password=f1",
        }
    }
    out = EVENTS.scrub_event(event)
    assert out["request"]["query_string"] == [["token", FILTERED], ["page", "2"]]
    assert out["request"]["cookies"] == FILTERED
    assert out["request"]["data"] == "user=bob&password=[Filtered]"


def test_breadcrumb_keeps_its_timestamp_type() -> None:
    when = dt.datetime.now(dt.UTC)
    crumb = {"timestamp": when, "message": "GET /?token=b1", "data": {"secret": "b2"}}
    out = EVENTS.scrub_breadcrumb(crumb, {})
    assert out["timestamp"] is when
    assert_no_secret(dumped(out), ["b1", "b2"])


def test_an_events_breadcrumbs_are_scrubbed_as_breadcrumbs() -> None:
    # Breadcrumbs are scrubbed with the event only: a statement loses its literals there
    # (the generic walk would keep them, no name sits next to them), in both event shapes.
    query = {"category": "query", "message": "SELECT * FROM u WHERE nick = 'qb-lit-1'"}
    log = {"category": "log", "message": "ok", "data": {"token": "qb-tok-2"}}
    for section in ({"values": [query, log]}, [query, log]):
        out = EVENTS.scrub_event({"breadcrumbs": section}, {})["breadcrumbs"]
        values = out["values"] if isinstance(out, dict) else out
        assert values[0]["message"] == "SELECT * FROM u WHERE nick = ?"
        assert values[1] == {"category": "log", "message": "ok", "data": {"token": FILTERED}}


def test_a_breadcrumb_the_scrubber_fails_on_is_dropped_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(statement: str) -> str:
        raise RuntimeError("scrubber bug")

    monkeypatch.setattr("telemetry.sentry.scrubbing.scrub_sql", failing)
    crumbs = [{"category": "query", "message": "SELECT 'qb-lit-3'"}, {"message": "kept"}]
    out = EVENTS.scrub_event({"breadcrumbs": {"values": crumbs}, "message": "m"}, {})
    assert out == {"breadcrumbs": {"values": [{"message": "kept"}]}, "message": "m"}


class CapturingTransport(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def body(self) -> str:
        return "\n".join(e.serialize().decode("utf-8", "replace") for e in self.envelopes)


@pytest.fixture
def sentry_capture() -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=transport,
        traces_sample_rate=1.0,
        include_local_variables=True,
        before_send=EVENTS.scrub_event,
        before_send_transaction=EVENTS.scrub_event,
        # As the bridge sets it up: no before_breadcrumb, the event's breadcrumbs are
        # scrubbed with it.
    )
    yield transport
    sentry_sdk.get_client().close(timeout=0)
    sentry_sdk.init()


def test_real_sentry_client_sends_no_secret(sentry_capture: CapturingTransport) -> None:
    logging.getLogger("app.test").warning("calling with api_key=%s", "bc-crumb-1")
    sentry_sdk.add_breadcrumb(category="query", message="SELECT * FROM u WHERE pin = 'bc-sql-6'")
    sentry_sdk.add_breadcrumb(type="http", category="httplib", data={"url": "https://x/?token=bc-7"})

    def handler() -> None:
        settings_ = {
            "db": {"url": "postgresql://app:frame-pw-2@db/x", "options": {"password": "frame-pw-3"}}
        }
        headers = [("Authorization", "Bearer frame-tok-4")]
        raise RuntimeError(f"cannot connect with {settings_['db']['url']} {headers}")

    with sentry_sdk.start_transaction(name=ROUTE, op="http.server"):
        with sentry_sdk.start_span(op="db", name="SELECT * FROM t WHERE token = 'span-tok-5'"):
            pass
        try:
            handler()
        except RuntimeError as exc:
            sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()
    body = sentry_capture.body()
    assert '"type":"transaction"' in body.replace(" ", "")
    secrets = ["bc-crumb-1", "frame-pw-2", "frame-pw-3", "frame-tok-4", "span-tok-5"]
    assert_no_secret(body, [*secrets, "bc-sql-6", "bc-7"])
    assert "RuntimeError" in body and ROUTE in body
    assert "WHERE pin = ?" in body  # the breadcrumbs were sent, scrubbed


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text()
        | st.binary()
        | st.builds(lambda v: AnnotatedValue(v, {"rem": [["!limit", "x"]]}), st.text()),
        lambda children: (
            st.lists(children)
            | st.dictionaries(
                st.text() | st.integers() | st.sampled_from(["password", "user"]), children
            )
            | st.tuples(st.text(), children)
        ),
        max_leaves=30,
    )
)
@settings(max_examples=300, deadline=None)
def test_scrub_event_never_raises(value: Any) -> None:
    for event in (
        value,
        {"request": value, "user": value, "logentry": value},
        {"exception": {"values": [value]}, "extra": {"password": value}},
    ):
        out = EVENTS.scrub_event(event, {"k": value})
        dumped(out)
    filtered = POLICY.scrub_value({"nested": {"api_key": value}})["nested"]["api_key"]
    assert all(leaf in (None, "", FILTERED) or isinstance(leaf, bool) for leaf in leaves(filtered))


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from leaves(item)
    else:
        yield value


@given(
    st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != ""),
    st.sampled_from(["password", "api_key", "X-API-Key", "client_secret", "token"]),
    st.integers(min_value=0, max_value=6),
)
@settings(max_examples=200, deadline=None)
def test_value_under_sensitive_key_never_survives(secret: str, key: str, depth: int) -> None:
    value: Any = {key: "zz" + secret + "zz"}
    for level in range(depth):
        value = {f"level{level}": value} if level % 2 else [value]
    out = EVENTS.scrub_event({"extra": value})
    assert "zz" + secret + "zz" not in dumped(out)


# -- span attributes and the exporter -------------------------------------------------


def test_scrub_attributes_returns_none_when_clean() -> None:
    clean: dict[str, Any] = {
        "http.route": ROUTE,
        "http.method": "GET",
        "http.status_code": 200,
        "url.full": "http://h/a?page=2",
        "db.statement": "SELECT 1 WHERE id = %(id)s",
    }
    assert POLICY.scrub_attributes(clean) is None
    assert POLICY.scrub_attributes(None) is None


def test_scrub_attributes_covers_urls_headers_statements_and_parameters() -> None:
    attrs: dict[str, Any] = {
        "http.url": "https://u:sk01q@h/p?token=sk02q",
        "url.full": "https://h/p?api_key=sk03q",
        "url.query": "password=sk04q&x=1",
        "http.target": "/p?secret=sk05q",
        "http.request.header.authorization": ("Bearer sk06q",),
        "http.response.header.set-cookie": ["sid=sk07q"],
        "db.statement": "INSERT INTO users (password) VALUES ('x') -- password='sk08q'",
        "db.query.text": "UPDATE t SET api_key = 'sk09q'",
        "db.query.parameter.0": "sk10q",
        "http.route": ROUTE,
        "http.status_code": 500,
        "retries": 3,
    }
    out = POLICY.scrub_attributes(attrs)
    assert out is not None
    assert_no_secret(dumped(out), [f"sk{i:02d}q" for i in range(1, 11)])
    assert out["http.request.header.authorization"] == (FILTERED,)
    assert out["http.route"] == ROUTE and out["http.status_code"] == 500 and out["retries"] == 3
    assert out["url.query"] == "password=[Filtered]&x=1"


@pytest.fixture
def pipeline() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, ScrubbingSpanExporter]]:
    memory = InMemorySpanExporter()
    exporter = ScrubbingSpanExporter(memory, POLICY)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, memory, exporter
    provider.shutdown()


def test_exporter_passes_clean_spans_through_as_the_same_object(pipeline: Any) -> None:
    _, memory, exporter = pipeline
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("GET " + ROUTE) as span:
        span.set_attribute("http.route", ROUTE)
    assert isinstance(span, ReadableSpan)
    assert scrub_span(POLICY, span) is span
    assert exporter.export([span]) is SpanExportResult.SUCCESS
    assert memory.get_finished_spans()[0] is span


def test_exporter_scrubs_attributes_events_and_status(pipeline: Any) -> None:
    provider, memory, exporter = pipeline
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("POST " + ROUTE, record_exception=False) as span:
        span.set_attribute("url.full", "https://h/x?token=SEKRET-e1")
        span.set_attribute("http.route", ROUTE)
        span.record_exception(ValueError("bad password=SEKRET-e2"))
        span.set_status(Status(StatusCode.ERROR, "failed with api_key=SEKRET-e3"))
    exported = memory.get_finished_spans()[0]
    assert exported is not span
    text = dumped([exported.to_json()])
    assert_no_secret(text, ["SEKRET"])
    assert exported.context.trace_id == span.context.trace_id
    assert exported.context.span_id == span.context.span_id
    assert exported.attributes["http.route"] == ROUTE
    assert exported.status.status_code is StatusCode.ERROR
    assert exported.instrumentation_scope == span.instrumentation_scope
    assert exporter.force_flush() is True
    exporter.shutdown()
    assert memory.export([span]) is SpanExportResult.FAILURE  # shutdown was delegated


def old_copy(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    """The copy as scrub_span made it before it kept clean values uncleaned: every container
    bounded, every value cleaned again."""
    bounded = BoundedAttributes(None, attributes)
    bounded.dropped = span.dropped_attributes
    events = BoundedList.from_seq(None, span.events)
    events.dropped = span.dropped_events
    links = BoundedList.from_seq(None, span.links)
    links.dropped = span.dropped_links
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=bounded, events=events, links=links, kind=span.kind, status=span.status,
        start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )  # fmt: skip


PLAIN_VALUES: dict[str, Any] = {
    "http.method": "GET",
    "http.status_code": 200,  # the server span gets http.response.status_code on export
    "ratio": 0.5,
    "cached": True,
    "http.request.header.accept": ("*/*", "text/html"),
    "url.query": "page=2&token=abc",
}
OTHER_VALUES: dict[str, Any] = {
    "ports": (80, 443),
    "flags": (True, False),
    "empty": (),
    "weights": [0.25, 0.75],
    **PLAIN_VALUES,
}


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("attributes", [PLAIN_VALUES, OTHER_VALUES])
def test_copy_of_a_span_holds_what_a_cleaned_copy_did(
    attributes: dict[str, Any], limited: bool
) -> None:
    limits = SpanLimits(max_span_attributes=4, max_events=1, max_links=1) if limited else None
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    linked = SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), is_remote=True)
    with provider.get_tracer("t").start_as_current_span(
        "GET /x", kind=SpanKind.SERVER, attributes=attributes, links=[Link(linked)] * 2
    ) as live:
        live.add_event("first", {"n": 1})
        live.add_event("second", {"password": "pw"})
    [span] = memory.get_finished_spans()
    copy = scrub_span(POLICY, span)
    assert copy is not span
    expected = {**span.attributes, **(derived_attributes(span) or {})}
    assert ("http.response.status_code" in expected) is not limited  # the oldest were dropped
    expected["url.query"] = "page=2&token=[Filtered]"
    reference = old_copy(copy, expected)
    assert copy.to_json() == reference.to_json()
    assert list(copy.attributes.items()) == list(reference.attributes.items())
    assert (copy.dropped_attributes, copy.dropped_events, copy.dropped_links) == (
        span.dropped_attributes,
        span.dropped_events,
        span.dropped_links,
    )
    assert (span.dropped_attributes > 0) is limited
    assert copy.events[-1].attributes == {"password": FILTERED}
    # The plain values of an unlimited span are the case made cheap: no second cleaning.
    uncleaned = attributes is PLAIN_VALUES and not limited
    assert isinstance(copy._attributes, BoundedAttributes) is not uncleaned
