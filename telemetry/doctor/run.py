"""``telemetry doctor``: is this service's telemetry wired the way it believes it is?

Each check returns a :class:`CheckResult` (PASS/WARN/FAIL, what was found, and for WARN/FAIL
what to do). The CLI prints them; an application can call :func:`run_checks` in-process to
also check what only the live process knows (double instrumentation, the global
propagator). Nothing here ever prints or returns a DSN's key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from telemetry.doctor.checks import CheckResult, Status
from telemetry.doctor.checks import display_url as _display_url
from telemetry.doctor.prometheus import check_prometheus
from telemetry.doctor.repo import scan_repo_for_dsns
from telemetry.doctor.runtime import check_runtime

# The test event's message and span's name stay importable from here (``telemetry.doctor``).
from telemetry.doctor.sinks import TEST_MESSAGE as TEST_MESSAGE
from telemetry.doctor.sinks import TEST_SPAN_NAME as TEST_SPAN_NAME
from telemetry.doctor.sinks import otlp_checks, sentry_checks
from telemetry.doctor.versions import check_versions
from telemetry.profile import resolve_profile
from telemetry.settings import (
    TelemetryConfigError,
    TelemetrySettings,
    load_settings,
)

__all__ = ["CheckResult", "Status", "format_json", "format_text", "is_ok", "run_checks"]

DEFAULT_TIMEOUT_S = 3.0


def run_checks(
    settings: TelemetrySettings | None = None,
    *,
    send: bool = False,
    prometheus_url: str | None = None,
    prometheus_job: str | None = None,
    repo: Path | None = None,
    env_file: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[CheckResult]:
    """Run every applicable check and return the results, in a stable order.

    ``settings`` defaults to what the service would load (environment, ``.env`` or
    ``env_file``). ``send`` sends a real test event and a real test span. ``repo`` is a git
    work tree to scan for committed DSNs (not scanned when None). Every network call is
    bounded by ``timeout`` seconds.
    """
    results: list[CheckResult] = []
    if settings is None:
        try:
            settings = load_settings(_env_file=env_file) if env_file else load_settings()
        except TelemetryConfigError as error:
            lines = str(error).splitlines()
            results.append(
                CheckResult(
                    "settings",
                    Status.FAIL,
                    "; ".join(line.strip() for line in lines[1:]) or str(error),
                    "give each variable named here an accepted value (README: configuration "
                    "contract), then run telemetry doctor again",
                )
            )
    if settings is not None:
        results.append(_settings_summary(settings))
        results.extend(sentry_checks(settings, send, timeout))
        results.extend(otlp_checks(settings, send, timeout))
        if prometheus_url:
            results.extend(
                check_prometheus(prometheus_url, settings.service_name, prometheus_job, timeout)
            )
    elif prometheus_url:
        results.append(CheckResult("prometheus", Status.SKIP, "settings are invalid"))
    results.extend(check_versions())
    results.extend(check_runtime())
    if repo is not None:
        results.append(scan_repo_for_dsns(repo))
    return results


# -- settings --------------------------------------------------------------------------------


def _settings_summary(settings: TelemetrySettings) -> CheckResult:
    profile = resolve_profile(settings)
    if profile.sentry_enabled:
        sentry = "on"
        mode = profile.sentry_traces.value
    else:
        sentry = f"off ({profile.sentry_disabled_reason})"
        mode = f"off (Sentry off; configured: {settings.sentry_traces.value})"
    return CheckResult(
        "settings",
        Status.PASS,
        f"environment={settings.environment.value} service={settings.service_name} "
        f"release={settings.release} traces={profile.traces_sample_rate:g} "
        f"profiles={profile.profiles_sample_rate:g} sentry={sentry} sentry_traces={mode} "
        f"jaeger={_display_url(settings.jaeger_traces_endpoint or 'off')}"
        + (f" ({settings.otlp_protocol})" if settings.jaeger_traces_endpoint else ""),
    )


# -- output ----------------------------------------------------------------------------------


def format_text(results: Sequence[CheckResult]) -> str:
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        line = f"{result.status.value}  {result.name:<{width}}  {result.detail}"
        if result.fix and result.status is not Status.PASS:
            line += f"  -> fix: {result.fix}"
        lines.append(line)
    counts = {status: sum(r.status is status for r in results) for status in Status}
    lines.append(
        "telemetry doctor: " + ", ".join(f"{counts[s]} {s.value}" for s in Status if counts[s])
    )
    return "\n".join(lines)


def is_ok(results: Sequence[CheckResult]) -> bool:
    return not any(result.status is Status.FAIL for result in results)


def format_json(results: Sequence[CheckResult]) -> str:
    return json.dumps(
        {"checks": [result.as_dict() for result in results], "ok": is_ok(results)}, indent=2
    )
