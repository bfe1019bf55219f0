"""urllib3's retry warnings from sentry-sdk's transport threads become the transport's one
failing line; the application's own urllib3 warnings are left alone. ``FailureLog``: one
line when failing starts, one at recovery, a flapping sink reported once per quiet period."""

from __future__ import annotations

import logging
import threading

import pytest

from telemetry.sentry.transport import RetryChatter
from telemetry.shared import FailureLog

RETRY = "Retrying (%r) after connection broken by '%r': %s"


def retry_record(thread: str) -> logging.LogRecord:
    record = logging.LogRecord(
        "urllib3.connectionpool", logging.WARNING, __file__, 1, RETRY,
        ("Retry(total=2)", "ConnectionRefusedError(111)", "/api/1/envelope/"), None,
    )  # fmt: skip
    record.threadName = thread
    return record


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.health"]


def test_sentry_threads_retries_are_one_line_app_threads_are_untouched(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chatter = RetryChatter()
    assert chatter.filter(retry_record("sentry-sdk.BackgroundWorker")), "inert without a log"
    health = FailureLog(
        "sentry-events", "lost events are counted", logging.getLogger("test.health")
    )
    chatter.health = health
    with caplog.at_level(logging.WARNING, logger="test.health"):
        kept = [chatter.filter(retry_record("sentry-sdk.BackgroundWorker")) for _ in range(9)]
        assert kept == [False] * 9 and chatter.absorbed == 9
        assert chatter.filter(retry_record("MainThread")), "the app's own retries stay"
        other = logging.LogRecord(
            "urllib3.connectionpool", logging.WARNING, __file__, 1, "Connection pool is full",
            (), None,
        )  # fmt: skip
        other.threadName = "sentry-sdk.BackgroundWorker"
        assert chatter.filter(other), "only retry chatter is folded"
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
