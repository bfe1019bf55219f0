"""``trace.use_span`` once hardened: OpenTelemetry's behaviour, with safe exception text."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from telemetry.tracing.exceptions import harden_exception_recording


class Unprintable(Exception):
    def __str__(self) -> str:
        raise KeyError("no")


@pytest.fixture
def tracer_and_spans() -> tuple[trace.Tracer, InMemorySpanExporter]:
    harden_exception_recording()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_current_while_used_then_restored_and_ended(tracer_and_spans: tuple) -> None:
    tracer, exporter = tracer_and_spans
    span = tracer.start_span("work")
    with trace.use_span(span, end_on_exit=True) as used:
        assert used is span
        assert trace.get_current_span() is span
    assert trace.get_current_span() is not span
    assert [s.name for s in exporter.get_finished_spans()] == ["work"]


def test_escaping_exception_recorded_with_safe_text(tracer_and_spans: tuple) -> None:
    tracer, exporter = tracer_and_spans
    span = tracer.start_span("work")
    with pytest.raises(Unprintable), trace.use_span(span, end_on_exit=True):
        raise Unprintable
    assert trace.get_current_span() is not span
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == (
        "Unprintable: <unprintable Unprintable: __str__ raised KeyError>"
    )
    assert [event.name for event in finished.events] == ["exception"]


def test_recording_and_status_can_be_turned_off(tracer_and_spans: tuple) -> None:
    tracer, exporter = tracer_and_spans
    span = tracer.start_span("work")
    with (
        pytest.raises(ValueError),
        trace.use_span(span, end_on_exit=False, record_exception=False,
                       set_status_on_exception=False),
    ):  # fmt: skip
        raise ValueError("x")
    assert exporter.get_finished_spans() == ()
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.UNSET
    assert not finished.events
