from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import api


class Captured(sentry_sdk.transport.Transport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            if item.type == "event":
                self.events.append(item.payload.json)


@pytest.fixture
def captured() -> Iterator[Captured]:
    transport = Captured()
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=transport, default_integrations=False)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api.bind_tracer(provider.get_tracer("test"))
    yield exporter
    api.bind_tracer(None)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("info", "info"),
        ("WARNING", "warning"),
        ("warn", "warning"),
        ("Critical", "fatal"),
        ("fatal", "fatal"),
        ("ERROR", "error"),
        ("debug", "debug"),
    ],
)
def test_levels_take_sentry_and_logging_names(given: str, expected: str) -> None:
    assert api.normalize_level(given) == expected


def test_unknown_level_is_refused_with_the_accepted_names() -> None:
    with pytest.raises(ValueError, match="accepted"):
        api.normalize_level("loud")


def test_context_lands_on_one_event_only(captured: Captured) -> None:
    api.capture_message("unusual activity", level="WARN", user_id="u1", attempts=3)
    api.capture_message("plain")
    first, second = captured.events
    assert first["level"] == "warning"
    assert first["message"] == "unusual activity"
    assert first["contexts"]["context"] == {"user_id": "u1", "attempts": 3}
    assert "context" not in second.get("contexts", {})


def test_capture_exception_returns_the_event_id(captured: Captured) -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        event_id = api.capture_exception(exc, action="lookup")
    assert event_id == captured.events[0]["event_id"]
    assert captured.events[0]["contexts"]["context"] == {"action": "lookup"}


def test_transactions_and_spans_are_otel_spans(spans: InMemorySpanExporter) -> None:
    with (
        api.start_transaction("agent.execute", op="agent") as transaction,
        api.start_span(op="llm.call", description="model call"),
    ):
        pass
    child, parent = spans.get_finished_spans()
    assert parent.name == "agent.execute"
    assert parent.attributes is not None and parent.attributes["sentry.op"] == "agent"
    assert child.name == "model call"
    assert child.parent is not None
    assert child.parent.span_id == transaction.get_span_context().span_id
