"""Every decision derived from the settings, taken once: the profile.

The settings say what was configured; the profile says what is on. ``setup`` wires what the
profile says, ``sentry`` and ``doctor`` read it, and nothing else looks at the raw settings
to decide (a second place deciding from the raw value is how the Sentry trace mode once
disagreed between the handle and sentry-sdk).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from telemetry.dsn import normalise_dsn, parse_dsn
from telemetry.settings import (
    Environment,
    SentryTracesMode,
    TelemetryConfigError,
    TelemetrySettings,
)

__all__ = ["Profile", "adopt_sentry_client", "resolve_profile"]

_ADOPT_HELP = (
    "either drop it from sentry_sdk.init() and let the bridge configure Sentry, or drop "
    "the bridge's setting and keep the app's sentry_sdk.init() value"
)


def adopt_sentry_client(
    settings: TelemetrySettings, options: Mapping[str, Any]
) -> TelemetrySettings:
    """The settings once an app's own ``sentry_sdk.init()`` client (its ``options``) is
    adopted: its DSN, release, environment, error rate, traces rate and ``before_send``
    are kept. The app's ``sentry_sdk.init()`` is code, so it counts as an explicit
    argument: where the bridge was configured with a *different* value for the same
    thing (an argument or a variable), there is no silent winner, setup stops with an
    error naming both. sentry-sdk fills release and environment itself when not given
    (git, ``production``), so those two are taken as the client says, never compared.
    """
    explicit = settings.model_fields_set
    update: dict[str, Any] = {}
    dsn = options.get("dsn")
    if dsn:
        try:
            client_dsn = normalise_dsn(str(dsn))
            parse_dsn(client_dsn)
        except ValueError as exc:
            raise TelemetryConfigError(f"the app's sentry_sdk.init() DSN: {exc}") from None
        ours = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
        if ours is not None and ours != client_dsn:
            raise TelemetryConfigError(
                "sentry_sdk.init() was already called with a DSN other than SENTRY_DSN "
                f"(or sentry_dsn=): one project only; {_ADOPT_HELP}"
            )
        update["sentry_dsn"] = SecretStr(client_dsn)
    rate = options.get("sample_rate")
    if isinstance(rate, (int, float)):
        if "errors_sample_rate" in explicit and settings.errors_sample_rate != rate:
            raise TelemetryConfigError(
                f"sentry_sdk.init(sample_rate={rate}) and TELEMETRY_ERRORS_SAMPLE_RATE="
                f"{settings.errors_sample_rate} disagree; {_ADOPT_HELP}"
            )
        update["errors_sample_rate"] = float(rate)
    traces = options.get("traces_sample_rate")
    if isinstance(traces, (int, float)):
        # The slot of SENTRY_TRACES_SAMPLE_RATE: below TELEMETRY_TRACES_SAMPLE_RATE and
        # OTEL_TRACES_SAMPLER, above the profile; the one OTel sampler applies it.
        given = settings.sentry_traces_sample_rate
        if given is not None and given != traces:
            raise TelemetryConfigError(
                f"sentry_sdk.init(traces_sample_rate={traces}) and SENTRY_TRACES_SAMPLE_RATE="
                f"{given} disagree; {_ADOPT_HELP}"
            )
        update["sentry_traces_sample_rate"] = float(traces)
    hook = options.get("before_send")
    if hook is not None:
        if settings.before_send is not None and settings.before_send is not hook:
            raise TelemetryConfigError(
                "sentry_sdk.init(before_send=...) and TelemetrySettings(before_send=...) are "
                f"two different hooks; {_ADOPT_HELP}"
            )
        update["before_send"] = hook
    release = options.get("release")
    environment = options.get("environment")
    return settings.with_sentry_client(
        update,
        release=str(release) if release else None,
        environment=str(environment) if environment else None,
    )


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
    #: False with ``OTEL_SDK_DISABLED=true``: no span is recorded or sent anywhere.
    tracing_enabled: bool = True
    #: Whether a child follows its parent's decision (every sampler but the standard
    #: non-parent-based ones named in ``OTEL_TRACES_SAMPLER``).
    follow_parent: bool = True
    #: Which setting chose ``traces_sample_rate`` (said in the start-up line).
    traces_rate_source: str = "profile"

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
    traces, source, follow_parent = _traces_rate(settings)
    profiles = settings.profiles_sample_rate
    sentry_traces = settings.sentry_traces
    if not sentry_enabled or settings.sentry_dsn is None or collector:
        sentry_traces = SentryTracesMode.OFF
    tracing = not settings.sdk_disabled
    if not tracing:
        # The OTel SDK turns itself off; the bridge then builds no span pipeline at all
        # (and says so) instead of exporting nothing while claiming a rate.
        export, traces, source = False, 0.0, "OTEL_SDK_DISABLED"
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
        tracing_enabled=tracing,
        follow_parent=follow_parent,
        traces_rate_source=source if traces is not None else "profile",
    )


def _traces_rate(settings: TelemetrySettings) -> tuple[float | None, str, bool]:
    """(rate or None for the profile's default, the setting that chose it, follow parent).

    Precedence: ``TELEMETRY_TRACES_SAMPLE_RATE`` (or the argument) > ``OTEL_TRACES_SAMPLER``
    (+ ``_ARG``) > ``SENTRY_TRACES_SAMPLE_RATE`` > the profile. Route rules (excluded and
    critical routes, a ``traces_sampler`` hook) apply on top of whichever rate wins.
    """
    sampler = settings.otel_traces_sampler
    follow_parent = sampler is None or sampler.startswith("parentbased_")
    if settings.traces_sample_rate is not None:
        return settings.traces_sample_rate, "TELEMETRY_TRACES_SAMPLE_RATE", follow_parent
    if sampler is not None:
        kind = sampler.removeprefix("parentbased_")
        if kind == "always_on":
            return 1.0, "OTEL_TRACES_SAMPLER", follow_parent
        if kind == "always_off":
            return 0.0, "OTEL_TRACES_SAMPLER", follow_parent
        arg = (settings.otel_traces_sampler_arg or "").strip()
        # The specification's default ratio when the argument is absent.
        return (float(arg) if arg else 1.0), "OTEL_TRACES_SAMPLER", follow_parent
    if settings.sentry_traces_sample_rate is not None:
        return settings.sentry_traces_sample_rate, "SENTRY_TRACES_SAMPLE_RATE", True
    return None, "profile", True
