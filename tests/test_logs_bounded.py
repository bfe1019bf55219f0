"""Log records are scrubbed lazily (only when a handler takes them) and bounded before any
regex runs: a 10 MB exception message is scanned no more than a 10 KB one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from telemetry.logs import install_logging
from telemetry.scrubbing import ScrubbingPolicy
from telemetry.scrubbing import policy as policy_module


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Length of every text a scrubbing regex pass runs over."""
    sizes: list[int] = []
    original_scan = ScrubbingPolicy._scan
    original_may = ScrubbingPolicy._may_hold_secret

    def scan(self: ScrubbingPolicy, text: str) -> str:
        sizes.append(len(text))
        return original_scan(self, text)

    def may(self: ScrubbingPolicy, text: str) -> bool:
        sizes.append(len(text))
        return original_may(self, text)

    monkeypatch.setattr(ScrubbingPolicy, "_scan", scan)
    monkeypatch.setattr(ScrubbingPolicy, "_may_hold_secret", may)
    for name in ("scrub_db_error", "scrub_free_text", "scrub_url_paths"):
        inner = getattr(policy_module, name)

        def spy(text: str, _inner: Any = inner) -> str:
            sizes.append(len(text))
            result: str = _inner(text)
            return result

        monkeypatch.setattr(policy_module, name, spy)
    return sizes


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handle = install_logging("svc", "production", stream=out, add_handler=True)
    try:
        yield out
    finally:
        handle.uninstall()


def log_failure(size: int) -> None:
    try:
        raise ValueError("password=hunter2 " + "x" * size)
    except ValueError:
        logging.getLogger("bounded").exception("request failed token=abc123secret")


def test_huge_exception_message_scanned_like_a_small_one(
    stream: io.StringIO, scanned: list[int]
) -> None:
    log_failure(10 * 1024)
    small = sum(scanned)
    scanned.clear()
    log_failure(10 * 1024 * 1024)
    huge = sum(scanned)
    limit = ScrubbingPolicy.default().max_length
    assert max(scanned) <= limit + 2048, max(scanned)
    assert huge <= 2 * small + 8 * limit, (small, huge)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert "hunter2" not in line["exception"] and "abc123secret" not in line["message"]
        assert "ValueError" in line["exception"] and "log_failure" in line["exception"]
        assert len(json.dumps(line)) < 4 * limit


def test_records_no_handler_takes_are_not_scrubbed(scanned: list[int]) -> None:
    out = io.StringIO()
    handle = install_logging("svc", "production", stream=out, add_handler=False)
    logger = logging.getLogger("bounded.quiet")
    logger.setLevel(logging.DEBUG)  # enabled, so records are created...
    logger.propagate = False
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.WARNING)  # ...but no handler emits them
    logger.addHandler(handler)
    try:
        for _ in range(50):
            logger.debug("token=abc123secret %s", "x" * 100_000)
        assert scanned == []
        logger.warning("token=%s", "abc123secret")
        assert scanned  # the one record a handler takes is scrubbed
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handle.uninstall()
    assert out.getvalue() == "token=[Filtered]\n"


def test_app_handlers_still_get_scrubbed_records(stream: io.StringIO) -> None:
    seen: list[str] = []

    class AppHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    logger = logging.getLogger("bounded.app")
    handler = AppHandler()
    logger.addHandler(handler)
    try:
        logger.warning("login failed password=%s", "hunter2")
    finally:
        logger.removeHandler(handler)
    assert seen == ["login failed password=[Filtered]"]
