"""Isolation between tests: telemetry is process-wide (one handle, global instrumentation,
a logging record factory), so a test that leaves it set up would change the next one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import AliasChoices

from telemetry.settings import TelemetrySettings


def settings_variables() -> list[str]:
    """Every environment variable the settings read, from the model itself."""
    names: list[str] = []
    for field in TelemetrySettings.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            names += [str(c) for c in field.validation_alias.choices if str(c).isupper()]
    return names


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No telemetry variable in the environment and no ``.env`` in the working directory."""
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


@pytest.fixture(autouse=True)
def no_telemetry_left_behind() -> Iterator[None]:
    yield
    from telemetry import setup as _setup

    if _setup._active is not None:
        _setup._active.shutdown(timeout_s=2)
