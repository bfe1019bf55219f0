"""Isolation between tests: telemetry is process-wide (one handle, global instrumentation,
a logging record factory), so a test that leaves it set up would change the next one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_telemetry_left_behind() -> Iterator[None]:
    yield
    from telemetry import _setup

    if _setup._active is not None:
        _setup._active.shutdown(timeout_s=2)
