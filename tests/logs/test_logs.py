"""Correlated logs: trace ids on every record, scrubbed text, JSON lines, Sentry event ids."""

from __future__ import annotations

import copy
import gzip
import io
import json
import logging
import logging.config
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from uvicorn.config import LOGGING_CONFIG

from telemetry.logs import (
    ConsoleFormatter,
    JsonFormatter,
    TraceContextFilter,
    install_logging,
    log_lifecycle,
)
from telemetry.logs import install as logs
from telemetry.scrubbing import ScrubbingPolicy
from telemetry.sentry.scrubbing import EventScrubber
from tests.support.net import poll_until

TRACER = TracerProvider().get_tracer("test")


class Probe(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Installed:
    def __init__(self, **kwargs: Any) -> None:
        self.stream = io.StringIO()
        kwargs.setdefault("add_handler", True)
        self.handle = install_logging(stream=self.stream, **kwargs)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def install() -> Iterator[Any]:
    made: list[Installed] = []

    def _install(service: str = "svc", environment: str = "production", **kwargs: Any) -> Installed:
        made.append(Installed(service=service, environment=environment, **kwargs))
        return made[-1]

    yield _install
    for installed in made:
        installed.handle.uninstall()
    assert logs._installed is None


def test_records_carry_trace_ids_inside_spans_and_empty_outside(install: Any) -> None:
    out = install()
    log = logging.getLogger("app.orders")
    log.warning("outside")
    with TRACER.start_as_current_span("request") as span:
        log.warning("inside")
    outside, inside = out.lines()
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["trace_sampled"] is True
    assert (outside["trace_id"], outside["span_id"], outside["trace_sampled"]) == ("", "", False)


def test_unsampled_span_still_correlates() -> None:
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    with tracer.start_as_current_span("dropped"):
        assert TraceContextFilter().filter(record)
    assert len(getattr(record, "trace_id", "")) == 32
    assert getattr(record, "trace_sampled", None) is False


def test_json_lines_have_the_documented_fields(install: Any) -> None:
    out = install(service="agents", environment="staging")
    logging.getLogger("app").warning("charged %s", "order-1", extra={"tenant": "acme", "n": 2})
    (line,) = out.lines()
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]
    assert line["level"] == "warning" and line["logger"] == "app"
    assert line["message"] == "charged order-1"
    assert (line["service"], line["environment"]) == ("agents", "staging")
    assert (line["tenant"], line["n"]) == ("acme", 2)
    assert "sentry_event_id" not in line and "exception" not in line


def test_secrets_in_messages_args_extras_and_exceptions_are_scrubbed(install: Any) -> None:
    out = install()
    log = logging.getLogger("app.auth")
    log.warning("login with %s", "password=sec-1")
    log.warning("%s=%s", "api_key", "sec-2")  # split over two args
    log.warning(f"callback https://h/cb?access_token={'sec-3'}")
    log.warning("headers %s", {"Authorization": "Bearer sec-4", "accept": "json"})
    log.warning("user", extra={"client_secret": "sec-5", "dsn": "https://sec-6@o.io/1"})
    try:
        raise ValueError("db url postgresql://app:sec-7@db/x")
    except ValueError:
        log.exception("failed")
    text = out.stream.getvalue()
    for secret in ("sec-1", "sec-2", "sec-3", "sec-4", "sec-5", "sec-6", "sec-7"):
        assert secret not in text, secret
    lines = out.lines()
    assert lines[1]["message"] == "api_key=[Filtered]"
    assert "'accept': 'json'" in lines[3]["message"]
    assert "ValueError" in lines[-1]["exception"] and "[Filtered]" in lines[-1]["exception"]


def test_uvicorn_access_records_get_trace_ids_and_keep_their_arg_shape(install: Any) -> None:
    """uvicorn.access does not propagate to root and its AccessFormatter unpacks 5 args."""
    saved = {
        name: (list(lg.handlers), lg.propagate, lg.level)
        for name in logs.UVICORN_LOGGERS
        for lg in [logging.getLogger(name)]
    }
    try:
        logging.config.dictConfig(copy.deepcopy(LOGGING_CONFIG))
        access = logging.getLogger("uvicorn.access")
        uvicorn_out = io.StringIO()
        access.handlers[0].setStream(uvicorn_out)  # type: ignore[attr-defined]
        probe = Probe()
        access.addHandler(probe)
        seen = probe.records
        install(log_format="console", add_handler=False)  # uvicorn keeps its handlers
        with TRACER.start_as_current_span("GET /x") as span:
            access.info(
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:5000",
                "GET",
                "/x?token=sec-8&page=2",
                "1.1",
                200,
            )
        printed = uvicorn_out.getvalue()
        assert '"GET /x?token=[Filtered]&page=2 HTTP/1.1" 200' in printed
        assert getattr(seen[0], "trace_id", "") == format(span.get_span_context().trace_id, "032x")
        assert len(seen[0].args) == 5  # type: ignore[arg-type]
    finally:
        for name, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate, lg.level = handlers, propagate, level


def test_uvicorn_lines_join_the_json_stream_when_taken_over(install: Any) -> None:
    access = logging.getLogger("uvicorn.access")
    saved = (list(access.handlers), access.propagate)
    access.handlers, access.propagate = [logging.StreamHandler(io.StringIO())], False
    try:
        out = install(log_format="json")
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/a?api_key=sec-9", "1.1", 204)
        (line,) = out.lines()
        assert line["logger"] == "uvicorn.access"
        assert "api_key=[Filtered]" in line["message"] and "sec-9" not in line["message"]
        out.handle.uninstall()
        assert access.propagate is False and len(access.handlers) == 1
    finally:
        access.handlers, access.propagate = saved


def test_install_is_idempotent_and_uninstall_restores(install: Any) -> None:
    root = logging.getLogger()
    handlers_before, factory_before = list(root.handlers), logging.getLogRecordFactory()
    first = install()
    second = install()
    assert second.handle is first.handle
    assert len(root.handlers) == len(handlers_before) + 1
    factory = logging.getLogRecordFactory()
    assert factory.previous is factory_before  # type: ignore[attr-defined]
    logging.getLogger("app").warning("once")
    assert len(first.lines()) == 1 and second.stream.getvalue() == ""
    first.handle.uninstall()
    first.handle.uninstall()
    assert root.handlers == handlers_before and logging.getLogRecordFactory() is factory_before
    assert not hasattr(
        logging.getLogger("x").makeRecord("x", 20, "f", 1, "m", (), None), "trace_id"
    )


def test_existing_root_handlers_are_left_alone_by_default(install: Any) -> None:
    root = logging.getLogger()
    own = logging.StreamHandler(io.StringIO())
    own.setFormatter(logging.Formatter("%(message)s trace=%(trace_id)s"))
    root.addHandler(own)
    try:
        out = install(add_handler=None)
        assert out.handle.handler is None and own.formatter is not None
        with TRACER.start_as_current_span("s") as span:
            logging.getLogger("app").warning("hi password=sec-10")
        written = own.stream.getvalue()
        assert f"trace={format(span.get_span_context().trace_id, '032x')}" in written
        assert "sec-10" not in written
    finally:
        root.removeHandler(own)


def test_format_is_chosen_by_profile() -> None:
    assert logs._resolve_format("auto", "development") == "console"
    assert logs._resolve_format("auto", "production") == "json"
    assert logs._resolve_format("json", "development") == "json"
    with pytest.raises(ValueError, match="log_format"):
        logs._resolve_format("xml", "production")


def test_console_line_is_readable_with_a_short_trace_id(install: Any) -> None:
    out = install(environment="development")
    assert out.handle.log_format == "console"
    with TRACER.start_as_current_span("s") as span:
        logging.getLogger("app").warning("saved %s", "x", extra={"rows": 3})
    line = out.stream.getvalue().strip()
    short = format(span.get_span_context().trace_id, "032x")[:8]
    assert f"WARNING  app [{short}] saved x rows=3" in line


def test_lifecycle_line_json_and_console(install: Any) -> None:
    out = install()
    log_lifecycle(
        "telemetry_initialized",
        environment="production",
        sentry="on",
        traces=0.1,
        name="svc",
        jaeger="http://u:sec-11@jaeger:4318",
        dsn=None,
    )
    (line,) = out.lines()
    assert line["message"].startswith("telemetry_initialized environment=production sentry=on")
    assert (line["event"], line["sentry"], line["traces"], line["name_"]) == (
        "telemetry_initialized",
        "on",
        0.1,
        "svc",
    )
    assert "dsn" not in line and "sec-11" not in out.stream.getvalue()
    record = logging.LogRecord("telemetry.lifecycle", 20, "f", 1, "%s", ("a b=1",), None)
    record._telemetry_lifecycle = True
    record.b = 1
    assert ConsoleFormatter().format(record).endswith("telemetry.lifecycle a b=1")


def test_formatters_work_without_install() -> None:
    record = logging.makeLogRecord({"msg": "token=%s", "args": ("sec-12",), "name": "n"})
    line = json.loads(JsonFormatter("s", "e", ScrubbingPolicy.default()).format(record))
    assert line["message"] == "token=[Filtered]" and line["trace_id"] == ""


# -- Sentry: pipeline loggers ignored, event id on the log line ---------------------------


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.server.bodies.append(raw)  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def sentry_events() -> Iterator[list[bytes]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sentry_sdk.init(
        dsn=f"http://public@127.0.0.1:{server.server_port}/1",
        before_send=EventScrubber(ScrubbingPolicy.default()).scrub_event,
        _experiments={"transport_compression_algo": "gzip"},  # type: ignore[typeddict-item]
    )
    yield server.bodies  # type: ignore[attr-defined]
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()
    server.shutdown()
    server.server_close()


def _events(bodies: list[bytes]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = []
    for body in bodies:
        header, *lines = body.split(b"\n")
        for item_header, payload in zip(lines[::2], lines[1::2], strict=False):
            if json.loads(item_header).get("type") == "event":
                found.append((json.loads(header), json.loads(payload)))
    return found


def test_log_line_carries_the_id_of_the_sentry_event(
    install: Any, sentry_events: list[bytes]
) -> None:
    out = install()
    logging.getLogger("opentelemetry.exporter.otlp").error("export failed: 404")
    logging.getLogger("telemetry.tracing").error("sink down")
    with TRACER.start_as_current_span("req") as span:
        logging.getLogger("app.pay").error("charge failed for card %s", "4111111111111111")
    sentry_sdk.flush(timeout=5)
    events = poll_until(lambda: _events(sentry_events), 5, describe="the Sentry event")
    assert len(events) == 1, "pipeline loggers must not become Sentry events"
    header, event = events[0]
    pipeline_lines, app_line = out.lines()[:2], out.lines()[2]
    assert all("sentry_event_id" not in line for line in pipeline_lines)
    assert app_line["sentry_event_id"] == event["event_id"] == header["event_id"]
    assert app_line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert event["logentry"]["formatted"] == "charge failed for card [Filtered]"
    assert "4111111111111111" not in json.dumps(event)
    assert "sentry_event_id" not in event.get("extra", {})
