"""urllib3's retry warnings logged while the counting transport sends become its one
failing line; the application's own urllib3 warnings are left alone. ``FailureLog``: one
line when failing starts, one at recovery, a flapping sink reported once per quiet period."""

from __future__ import annotations

import logging
import threading

import pytest

from telemetry.sentry.transport import RetryChatter
from telemetry.shared import FailureLog

RETRY = "Retrying (%r) after connection broken by '%r': %s"


def retry_record() -> logging.LogRecord:
    return logging.LogRecord(
        "urllib3.connectionpool", logging.WARNING, __file__, 1, RETRY,
        ("Retry(total=2)", "ConnectionRefusedError(111)", "/api/1/envelope/"), None,
    )  # fmt: skip


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.health"]


def test_retries_while_the_transport_sends_are_one_line_the_rest_untouched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chatter = RetryChatter()
    assert chatter.filter(retry_record()), "inert outside a send"
    health = FailureLog(
        "sentry-events", "lost events are counted", logging.getLogger("test.health")
    )
    elsewhere: list[bool] = []
    with caplog.at_level(logging.WARNING, logger="test.health"), chatter.routing(health):
        kept = [chatter.filter(retry_record()) for _ in range(9)]
        assert kept == [False] * 9 and chatter.absorbed == 9
        # Another thread meanwhile (the application's own urllib3 calls) is left alone.
        app = threading.Thread(target=lambda: elsewhere.append(chatter.filter(retry_record())))
        app.start()
        app.join()
        other = logging.LogRecord(
            "urllib3.connectionpool", logging.WARNING, __file__, 1, "Connection pool is full",
            (), None,
        )  # fmt: skip
        assert chatter.filter(other), "only retry chatter is folded"
    assert elsewhere == [True]
    assert chatter.filter(retry_record()), "inert again after the send"
    [failing] = lines(caplog)
    assert failing.startswith("telemetry_sink_failing sink=sentry-events: lost events are counted")
    assert "ConnectionRefusedError(111)" in failing


def test_failure_log_once_per_failure_and_once_per_quiet_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = FailureLog("s", "counted", logging.getLogger("test.health"), quiet_period_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.health"):
        threads = [threading.Thread(target=log.failed) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        log.succeeded()
        log.succeeded()
        log.failed()  # flapping within the quiet period: not reported, nor its recovery
        log.succeeded()
    assert lines(caplog) == [
        "telemetry_sink_failing sink=s: counted until it recovers",
        "telemetry_sink_recovered sink=s",
    ]
