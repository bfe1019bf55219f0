"""Every decision derived from the settings, taken once: the profile.

The settings say what was configured; the profile says what is on. ``setup`` wires what the
profile says, ``sentry`` and ``doctor`` read it, and nothing else looks at the raw settings
to decide (a second place deciding from the raw value is how the Sentry trace mode once
disagreed between the handle and sentry-sdk).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from telemetry.settings import Environment, SentryTracesMode, TelemetrySettings

__all__ = ["Profile", "resolve_profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """What is on, once the environment's defaults and the overrides are combined."""

    environment: Environment
    sentry_enabled: bool
    sentry_disabled_reason: str | None
    traces_sample_rate: float
    profiles_sample_rate: float
    export_traces: bool
    #: The Sentry arm of the span fan-out as it runs: ``off`` whenever Sentry is off, there
    #: is no DSN to send spans to (file sink), or the Collector forwards spans to Sentry.
    sentry_traces: SentryTracesMode
    #: Collector mode: the Collector tail-samples and fans spans out to Jaeger and Sentry.
    collector: bool

    @property
    def span_sink(self) -> Literal["collector", "jaeger"]:
        """The name of the OTLP span sink in ``/metrics`` and the logs."""
        return "collector" if self.collector else "jaeger"

    @property
    def exemplars_for(self) -> Literal["kept", "sampled"]:
        """Which requests get an exemplar: with a tail sampler only traces sure to be kept."""
        return "kept" if self.collector else "sampled"

    @property
    def link_profiles(self) -> bool:
        """Whether spans carry Sentry's profiler id (continuous profiling is on)."""
        return self.sentry_enabled and self.profiles_sample_rate > 0


def resolve_profile(settings: TelemetrySettings) -> Profile:
    env = settings.environment
    has_span_sink = bool(
        settings.jaeger_traces_endpoint or settings.file_sink_dir or settings.sentry_dsn
    )
    has_event_sink = bool(settings.sentry_dsn or settings.file_sink_dir)
    reason: str | None = None
    if env is Environment.DEVELOPMENT:
        sentry_enabled = False
        reason = "development profile" if has_event_sink else "no SENTRY_DSN"
        export = bool(settings.jaeger_traces_endpoint or settings.file_sink_dir)
        default_traces = 1.0 if export else 0.0
        default_profiles = 0.0
    else:
        sentry_enabled = has_event_sink
        reason = None if sentry_enabled else "no SENTRY_DSN"
        export = has_span_sink
        default_traces = 1.0 if env is Environment.STAGING else 0.1
        default_profiles = default_traces
        if env is Environment.STAGING and sys.version_info < (3, 12):
            # Opt-in on 3.11 (TELEMETRY_PROFILES_SAMPLE_RATE): sampling profilers race
            # with frame teardown on 3.11; one SIGSEGV under load was seen with
            # sentry-sdk's continuous profiler at 100% (issue 16), not reproduced since.
            default_profiles = 0.0
    collector = settings.export_mode == "collector"
    if collector:
        # The Collector tail-samples: the service sends everything (or a floor rate
        # set by TELEMETRY_TRACES_SAMPLE_RATE) and the decision moves there.
        export = bool(settings.jaeger_traces_endpoint)
        default_traces = 1.0 if export else 0.0
    traces = settings.traces_sample_rate
    profiles = settings.profiles_sample_rate
    sentry_traces = settings.sentry_traces
    if not sentry_enabled or settings.sentry_dsn is None or collector:
        sentry_traces = SentryTracesMode.OFF
    return Profile(
        environment=env,
        sentry_enabled=sentry_enabled,
        sentry_disabled_reason=reason,
        traces_sample_rate=default_traces if traces is None else traces,
        profiles_sample_rate=(
            default_profiles if profiles is None or not sentry_enabled else profiles
        ),
        export_traces=export,
        sentry_traces=sentry_traces,
        collector=collector,
    )
