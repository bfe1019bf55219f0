"""``before_send``: the project's filters, then the user's hook, then scrubbing; and the
error event pointed at the span the exception escaped from."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from fastapi import HTTPException
from opentelemetry.sdk.trace import TracerProvider

from telemetry.scrubbing import FILTERED, ScrubbingPolicy
from telemetry.sentry.events import build_before_send, remember_failing_spans
from telemetry.sentry.scrubbing import EventScrubber

SCRUB = EventScrubber(ScrubbingPolicy.default()).scrub_event


def hint_for(exc: BaseException) -> dict[str, Any]:
    try:
        raise exc
    except BaseException:
        return {"exc_info": sys.exc_info()}


def event(url: str = "http://api/items?id=1") -> dict[str, Any]:
    return {"message": "boom", "request": {"url": url}, "contexts": {}}


def never_excluded(path: str) -> bool:
    return False


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt(), SystemExit(1), HTTPException(status_code=404)],
    ids=["KeyboardInterrupt", "SystemExit", "HTTPException-404"],
)
def test_ignored_exceptions_are_dropped(exc: BaseException) -> None:
    before_send = build_before_send(never_excluded, SCRUB, None)
    assert before_send(event(), hint_for(exc)) is None


def test_server_errors_are_kept() -> None:
    before_send = build_before_send(never_excluded, SCRUB, None)
    assert before_send(event(), hint_for(HTTPException(status_code=503))) is not None
    assert before_send(event(), hint_for(ValueError("x"))) is not None


def test_events_of_excluded_routes_are_dropped() -> None:
    before_send = build_before_send(lambda path: path.startswith("/health"), SCRUB, None)
    assert before_send(event("http://api/health/live?x=1"), {}) is None
    assert before_send(event("http://api/items"), {}) is not None


def test_the_user_hook_runs_before_scrubbing_and_may_drop() -> None:
    def hook(ev: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        if ev["message"] == "drop me":
            return None
        ev["extra"] = {"password": "hunter2"}
        return ev

    before_send = build_before_send(never_excluded, SCRUB, hook)
    assert before_send({**event(), "message": "drop me"}, {}) is None
    out = before_send(event(), {})
    assert out is not None and out["extra"] == {"password": FILTERED}


def test_the_event_points_at_the_span_the_exception_escaped() -> None:
    remember_failing_spans()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        try:
            with tracer.start_as_current_span("db query") as query:
                raise RuntimeError("deadlock")
        except RuntimeError as exc:
            failure = exc
    ids = request.get_span_context(), query.get_span_context()
    trace_id = format(ids[0].trace_id, "032x")
    ev = event()
    ev["contexts"]["trace"] = {"trace_id": trace_id, "span_id": format(ids[0].span_id, "016x")}
    out = build_before_send(never_excluded, None, None)(ev, hint_for(failure))
    assert out is not None
    assert out["contexts"]["trace"]["span_id"] == format(ids[1].span_id, "016x")
    assert out["contexts"]["trace"]["parent_span_id"] == format(ids[0].span_id, "016x")


def test_the_trace_context_gets_the_origin_and_the_capturing_thread() -> None:
    """What sentry-sdk's trace context says and one built from OTel ids (otlp) lacks."""
    import threading

    before_send = build_before_send(never_excluded, SCRUB, None)
    built = {**event(), "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}}}
    sent = before_send(built, {})
    assert sent is not None
    trace_context = sent["contexts"]["trace"]
    assert trace_context["origin"] == "auto.otel"
    assert trace_context["data"] == {
        "thread.id": str(threading.current_thread().ident),
        "thread.name": threading.current_thread().name,
    }
    own = {**event(), "contexts": {"trace": {"origin": "auto.http.asgi",
                                             "data": {"thread.id": "1", "thread.name": "t"}}}}
    kept = before_send(own, {})
    assert kept is not None and kept["contexts"]["trace"]["origin"] == "auto.http.asgi"
    assert kept["contexts"]["trace"]["data"] == {"thread.id": "1", "thread.name": "t"}
