"""The profile is the one place decisions are taken: every consumer reads the same answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentry_sdk

from telemetry import TelemetrySettings, setup_telemetry
from telemetry.profile import resolve_profile
from telemetry.settings import SentryTracesMode

DSN = "http://publickey@127.0.0.1:9/1"
COLLECTOR = "http://127.0.0.1:9"


@pytest.mark.parametrize("configured", list(SentryTracesMode))
def test_collector_mode_turns_the_sentry_span_arm_off(configured: SentryTracesMode) -> None:
    settings = TelemetrySettings(
        environment="staging",
        sentry_dsn=DSN,
        export_mode="collector",
        otlp_endpoint=COLLECTOR,
        sentry_traces=configured,
    )
    profile = resolve_profile(settings)
    assert profile.sentry_enabled
    assert profile.sentry_traces is SentryTracesMode.OFF
    assert (profile.span_sink, profile.exemplars_for) == ("collector", "kept")


@pytest.mark.parametrize("configured", list(SentryTracesMode))
def test_direct_mode_keeps_the_configured_arm(configured: SentryTracesMode) -> None:
    settings = TelemetrySettings(environment="staging", sentry_dsn=DSN, sentry_traces=configured)
    assert resolve_profile(settings).sentry_traces is configured


def test_no_dsn_means_no_sentry_span_arm(tmp_path: Path) -> None:
    settings = TelemetrySettings(
        environment="staging", file_sink_dir=tmp_path, sentry_traces="envelope"
    )
    profile = resolve_profile(settings)
    assert profile.sentry_enabled  # errors go to the file sink
    assert profile.sentry_traces is SentryTracesMode.OFF


def test_development_has_no_sentry_span_arm() -> None:
    settings = TelemetrySettings(sentry_dsn=DSN, sentry_traces="envelope")
    assert resolve_profile(settings).sentry_traces is SentryTracesMode.OFF


def test_collector_with_envelope_starts_sentry_sdk_as_the_handle_says() -> None:
    """Collector mode with TELEMETRY_SENTRY_TRACES=envelope once gave a handle saying ``off``
    while sentry-sdk ran in envelope mode (``traces_sample_rate=1.0``, ``instrumenter=otel``)."""
    settings = TelemetrySettings(
        environment="staging",
        sentry_dsn=DSN,
        export_mode="collector",
        otlp_endpoint=COLLECTOR,
        sentry_traces="envelope",
        shutdown_timeout_seconds=0.5,
    )
    handle = setup_telemetry(None, settings)
    try:
        assert handle.sentry_traces is SentryTracesMode.OFF
        options = sentry_sdk.get_client().options
        assert options["instrumenter"] == "sentry"
        assert options["traces_sample_rate"] is None
        processors = handle.tracer_provider._active_span_processor._span_processors
        assert not any("Sentry" in type(p).__name__ for p in processors)
    finally:
        handle.shutdown()
