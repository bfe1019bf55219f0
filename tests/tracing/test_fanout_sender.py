"""The OTLP fan-out's per-sink sender: bounded queue dropping the oldest batches, retries
within the export deadline, a server without OTLP ingestion switched off, flush and stop.
No network and no wall-clock assertions: posting is replaced by a scripted fake."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from telemetry.shared import OTLPHttpTarget
from telemetry.tracing import fanout
from tests.support.net import poll_until


@dataclass
class Counters:
    exported: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def spans_exported(self, sink: str, count: int = 1) -> None:
        self.exported.append(count)

    def spans_failed(self, sink: str, count: int = 1) -> None:
        self.failed.append(count)

    def spans_dropped(self, sink: str, count: int = 1) -> None:
        self.dropped.append(count)


class ScriptedSender(fanout._Sender):
    """Answers each post with the next status of ``statuses`` (the last one repeats);
    ``gate`` holds every post until it is set."""

    def __init__(self, statuses: list[int | None], gate: threading.Event, **kwargs: object):
        self.statuses = statuses
        self.gate = gate
        self.bodies: list[bytes] = []
        self.attempts = 0
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _send(self, body: bytes, timeout_s: float) -> int | None:
        self.gate.wait()
        self.attempts += 1
        self.bodies.append(body)
        return self.statuses[min(self.attempts, len(self.statuses)) - 1]


def soon() -> float:
    """A deadline far enough never to be met by a passing test (it bounds a failing one)."""
    return time.monotonic() + 30


TARGET = OTLPHttpTarget(
    "sentry",
    "http://127.0.0.1:9/otlp",
    no_ingestion_statuses=frozenset({404}),
    no_ingestion_message="no OTLP here",
)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "_BACKOFF_S", (0.01, 0.01))


@pytest.fixture
def make() -> Iterator[object]:
    senders: list[ScriptedSender] = []

    def build(
        statuses: list[int | None], *, open_gate: bool = True, max_queued_spans: int = 100,
        timeout_s: float = 5.0,
    ) -> tuple[ScriptedSender, Counters]:  # fmt: skip
        gate = threading.Event()
        if open_gate:
            gate.set()
        counters = Counters()
        sender = ScriptedSender(
            statuses,
            gate,
            target=TARGET,
            counters=counters,
            max_queued_spans=max_queued_spans,
            timeout_s=timeout_s,
            compression="none",
        )
        senders.append(sender)
        return sender, counters

    yield build
    for sender in senders:
        sender.gate.set()
        sender.stop(deadline=soon())


def test_a_full_queue_drops_the_oldest_batches(make: object) -> None:
    sender, counters = make([200], open_gate=False, max_queued_spans=10)  # type: ignore[operator]
    sender.submit(b"in-flight", 4)
    poll_until(lambda: sender._busy, 5, describe="the first batch in flight")
    for i in range(4):
        sender.submit(f"b{i}".encode(), 4)
    # 16 spans queued behind the in-flight batch, 10 allowed: b0 and b1 fell out.
    assert counters.dropped == [4, 4]
    sender.gate.set()
    assert sender.flush(deadline=soon())
    assert sender.bodies == [b"in-flight", b"b2", b"b3"]
    assert sum(counters.exported) == 12


def test_one_oversized_batch_is_still_sent(make: object) -> None:
    sender, counters = make([200], max_queued_spans=2)  # type: ignore[operator]
    sender.submit(b"big", 50)
    assert sender.flush(deadline=soon())
    assert (counters.exported, counters.dropped) == ([50], [])


def test_retryable_statuses_are_retried_then_counted_failed(make: object) -> None:
    sender, counters = make([503, None, 503])  # type: ignore[operator]
    sender.submit(b"x", 3)
    assert sender.flush(deadline=soon())
    assert sender.attempts == 3  # the first try and one per backoff step
    assert (counters.failed, counters.exported) == ([3], [])


def test_a_retry_that_succeeds_counts_as_exported(make: object) -> None:
    sender, counters = make([429, 200])  # type: ignore[operator]
    sender.submit(b"x", 2)
    assert sender.flush(deadline=soon())
    assert (sender.attempts, counters.exported, counters.failed) == (2, [2], [])


def test_no_retry_past_the_export_deadline(
    make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "_BACKOFF_S", (60.0, 60.0))
    sender, counters = make([503], timeout_s=5.0)  # type: ignore[operator]
    sender.submit(b"x", 1)
    assert sender.flush(deadline=soon())
    assert (sender.attempts, counters.failed) == (1, [1])


def test_client_errors_are_not_retried(make: object) -> None:
    sender, counters = make([400])  # type: ignore[operator]
    sender.submit(b"x", 1)
    assert sender.flush(deadline=soon())
    assert (sender.attempts, counters.failed) == (1, [1])


def test_a_server_without_otlp_ingestion_switches_the_sink_off(make: object) -> None:
    sender, counters = make([404])  # type: ignore[operator]
    sender.submit(b"x", 2)
    assert sender.flush(deadline=soon())
    sender.submit(b"y", 5)
    assert sender.health.disabled_reason == "no OTLP here"
    assert sender.attempts == 1, "nothing is posted once the sink is off"
    assert (counters.dropped, counters.failed) == ([2, 5], [])


def test_flush_gives_up_at_its_deadline_and_stop_ends_the_thread(make: object) -> None:
    sender, _ = make([200], open_gate=False)  # type: ignore[operator]
    sender.submit(b"x", 1)
    assert not sender.flush(deadline=0.0), "a deadline in the past does not wait"
    sender.gate.set()
    assert sender.flush(deadline=soon())
    sender.stop(deadline=soon())
    assert not sender._thread.is_alive()
