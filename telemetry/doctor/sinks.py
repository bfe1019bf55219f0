"""The sink checks of ``telemetry doctor``, driven by the service's settings: the Sentry DSN
(and with ``send`` a real test event), the OTLP endpoint Jaeger receives spans on (and with
``send`` a real test span), and Sentry's OTLP ingestion when traces go there. Every network
call is bounded by the caller's timeout; no DSN key is ever printed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from telemetry.doctor.checks import (
    CheckResult,
    Status,
    describe_network_error,
    display_url,
    http_request,
)
from telemetry.profile import resolve_profile
from telemetry.sentry import recording_transport_class
from telemetry.settings import (
    Environment,
    ParsedDsn,
    SentryTracesMode,
    TelemetrySettings,
    parse_dsn,
)
from telemetry.shared import DISTRIBUTION

__all__ = ["TEST_MESSAGE", "TEST_SPAN_NAME", "otlp_checks", "sentry_checks"]

TEST_MESSAGE = "telemetry doctor test event"
TEST_SPAN_NAME = "telemetry doctor test span"
_PROTOBUF = {"Content-Type": "application/x-protobuf"}


# -- Sentry DSN and test event ---------------------------------------------------------------


def sentry_checks(settings: TelemetrySettings, send: bool, timeout: float) -> list[CheckResult]:
    if settings.sentry_dsn is None:
        if settings.environment is not Environment.DEVELOPMENT and not settings.file_sink_dir:
            return [
                CheckResult(
                    "sentry.dsn",
                    Status.WARN,
                    f"SENTRY_DSN is not set in {settings.environment.value}: errors go nowhere",
                    "set SENTRY_DSN to the project's DSN (from a secret, not the repository)",
                )
            ]
        return [CheckResult("sentry.dsn", Status.SKIP, "SENTRY_DSN is not set")]
    dsn = parse_dsn(settings.sentry_dsn.get_secret_value())
    note = "" if resolve_profile(settings).sentry_enabled else " (unused: the development profile)"
    results = [
        CheckResult("sentry.dsn", Status.PASS, f"{dsn.redacted} (project {dsn.project_id}){note}")
    ]
    if send:
        results.append(_send_test_event(settings, dsn, timeout))
    return results


def _send_test_event(settings: TelemetrySettings, dsn: ParsedDsn, timeout: float) -> CheckResult:
    import sentry_sdk

    assert settings.sentry_dsn is not None
    # A client of its own with a fresh scope: the app's global client (in-process use) and
    # its scope data are left untouched, and no integration is installed.
    client = sentry_sdk.Client(
        dsn=settings.sentry_dsn.get_secret_value(),
        transport=recording_transport_class(timeout),
        environment=settings.environment.value,
        release=settings.release,
        sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[],
        send_client_reports=False,
        send_default_pii=False,
    )
    transport: Any = client.transport
    event: Any = {"message": TEST_MESSAGE, "level": "info", "logger": "telemetry.doctor"}
    event_id = client.capture_event(event, scope=sentry_sdk.Scope())
    client.flush(timeout=timeout)
    client.close(timeout=0)
    where = dsn.redacted
    if transport.errors:
        problem, _, refused = describe_network_error(transport.errors[0], timeout)
        return CheckResult(
            "sentry.test-event",
            Status.FAIL,
            f"{where} unreachable: {problem}",
            "check the DSN's host and port, DNS and outbound firewall/proxy from this machine"
            + ("; nothing listens on that port" if refused else ""),
        )
    status = transport.statuses[0] if transport.statuses else None
    if status is None:
        return CheckResult(
            "sentry.test-event",
            Status.FAIL,
            f"{where}: no answer within {timeout:g}s",
            "the server accepted the connection but did not answer: check it is a Sentry "
            "ingestion endpoint and not overloaded",
        )
    if 200 <= status < 300:
        return CheckResult(
            "sentry.test-event",
            Status.PASS,
            f"sent to {where}: event id {event_id} (message {TEST_MESSAGE!r})",
        )
    fixes = {
        401: "the server does not accept this DSN's key: copy the DSN again from the project's "
        "Client Keys settings",
        403: "the key is disabled or the project refuses it: check Client Keys and the "
        "project's allowed origins",
        404: "no such project at this URL: check the project id and any path prefix",
        413: "the event was too large for the server",
        429: "the project is rate limited or over quota: raise its limits or lower "
        "TELEMETRY_ERRORS_SAMPLE_RATE",
    }
    return CheckResult(
        "sentry.test-event",
        Status.FAIL,
        f"{where} refused the event: HTTP {status}",
        fixes.get(status, "check the server's logs for why it refused the envelope"),
    )


# -- OTLP endpoints --------------------------------------------------------------------------


def _empty_export_request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    return ExportTraceServiceRequest().SerializeToString()


def otlp_checks(settings: TelemetrySettings, send: bool, timeout: float) -> list[CheckResult]:
    results: list[CheckResult] = []
    endpoint = settings.jaeger_traces_endpoint
    if endpoint is None:
        results.append(
            CheckResult(
                "otlp.jaeger",
                Status.SKIP,
                "no OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
                " unset): no Jaeger export",
            )
        )
    else:
        probe = _probe_jaeger(endpoint, settings.otlp_protocol, timeout)
        results.append(probe)
        if send and probe.status is Status.PASS:
            results.append(_send_test_span(settings, timeout))
    if settings.sentry_dsn is not None and settings.sentry_traces is SentryTracesMode.OTLP:
        results.append(
            _probe_sentry_otlp(parse_dsn(settings.sentry_dsn.get_secret_value()), timeout)
        )
    return results


_REFUSED_FIX = (
    "nothing listens there: start Jaeger or the collector (OTLP/HTTP 4318, gRPC 4317) or "
    "correct OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)
_HUNG_FIX = (
    "the port accepts connections but never answers (a hung collector, a firewall dropping "
    "packets, or the wrong protocol for the port): check what listens there"
)


def _otlp_headers() -> dict[str, str]:
    """The headers the OTLP exporter would send (a collector may require credentials)."""
    from opentelemetry.util.re import parse_env_headers

    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    return {**parse_env_headers(raw, liberal=True), **_PROTOBUF}


def _probe_grpc(endpoint: str, timeout: float) -> CheckResult:
    parts = urlsplit(endpoint)
    started = time.monotonic()
    try:
        with contextlib.closing(
            socket.create_connection((parts.hostname, parts.port or 4317), timeout=timeout)
        ):
            pass
    except OSError as error:
        problem, timed_out, _ = describe_network_error(error, timeout)
        fix = _HUNG_FIX if timed_out else _REFUSED_FIX
        return CheckResult("otlp.jaeger", Status.FAIL, f"{endpoint} (gRPC): {problem}", fix)
    elapsed_ms = (time.monotonic() - started) * 1000
    return CheckResult(
        "otlp.jaeger",
        Status.PASS,
        f"{endpoint} (gRPC) accepts connections ({elapsed_ms:.0f} ms); --send exports a span",
    )


def _probe_jaeger(endpoint: str, protocol: str, timeout: float) -> CheckResult:
    name, shown = "otlp.jaeger", display_url(endpoint)
    if protocol == "grpc":
        return _probe_grpc(shown, timeout)
    answer = http_request(
        endpoint,
        timeout=timeout,
        method="POST",
        body=_empty_export_request(),
        headers=_otlp_headers(),
    )
    if answer.ok:
        return CheckResult(
            name, Status.PASS, f"{shown} accepted an empty OTLP export (HTTP {answer.status})"
        )
    if answer.status is None:
        if answer.timed_out:
            fix = _HUNG_FIX
        elif answer.refused:
            fix = _REFUSED_FIX
        else:
            fix = "check the endpoint's host name, TLS and any proxy between here and there"
        return CheckResult(name, Status.FAIL, f"{shown}: {answer.problem}", fix)
    if answer.status in (404, 405):
        fix = (
            "this is not an OTLP traces path: OTEL_EXPORTER_OTLP_ENDPOINT takes the base URL "
            "(http://jaeger:4318, /v1/traces is appended), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT "
            "the full URL"
        )
    elif answer.status in (401, 403):
        fix = "the collector wants credentials: set them in OTEL_EXPORTER_OTLP_HEADERS"
    elif answer.status in (400, 415):
        fix = (
            "the server did not take OTLP protobuf: check OTEL_EXPORTER_OTLP_PROTOCOL and the port"
        )
    else:
        fix = "check the collector's logs for why it refused the export"
    return CheckResult(name, Status.FAIL, f"{shown} answered HTTP {answer.status}", fix)


def _send_test_span(settings: TelemetrySettings, timeout: float) -> CheckResult:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from opentelemetry.trace import format_trace_id

    from telemetry.tracing import MissingExtraError, build_resource, jaeger_exporter

    name = "otlp.jaeger.test-span"
    bounded = settings.model_copy(update={"export_timeout_seconds": timeout})
    try:
        exporter = jaeger_exporter(bounded)
    except MissingExtraError as error:
        fix = f"pip install '{DISTRIBUTION}[{error.extra}]'"
        return CheckResult(name, Status.FAIL, str(error), fix)
    assert exporter is not None
    # A provider of its own with no processor: the span is exported here, synchronously,
    # and never reaches the app's pipeline when run in-process.
    provider = TracerProvider(resource=build_resource(settings), sampler=ALWAYS_ON)
    span = provider.get_tracer("telemetry.doctor").start_span(TEST_SPAN_NAME)
    span.set_attribute("telemetry.doctor", True)
    span.end()
    trace_id = format_trace_id(span.get_span_context().trace_id)
    try:
        result = exporter.export([span])  # type: ignore[list-item]
    finally:
        exporter.shutdown()
    if result is SpanExportResult.SUCCESS:
        return CheckResult(name, Status.PASS, f"exported {TEST_SPAN_NAME!r}: trace id {trace_id}")
    return CheckResult(
        name,
        Status.FAIL,
        f"the exporter could not deliver the test span (trace id {trace_id}) within {timeout:g}s",
        "the endpoint answered the probe but refused a real span: check the collector's logs",
    )


def _probe_sentry_otlp(dsn: ParsedDsn, timeout: float) -> CheckResult:
    name = "otlp.sentry"
    headers = {
        **_PROTOBUF,
        "X-Sentry-Auth": dsn.auth_header(),
    }
    # The key travels in the header only, so the URL is safe to print.
    shown = dsn.otlp_traces_url
    answer = http_request(
        dsn.otlp_traces_url,
        timeout=timeout,
        method="POST",
        body=_empty_export_request(),
        headers=headers,
    )
    if answer.ok:
        return CheckResult(name, Status.PASS, f"{shown} accepts OTLP (HTTP {answer.status})")
    if answer.status in (404, 405, 501):
        return CheckResult(
            name,
            Status.WARN,
            f"{shown} answered HTTP {answer.status}: this server has no OTLP ingestion",
            "set TELEMETRY_SENTRY_TRACES=envelope for this server (or off)",
        )
    if answer.status in (401, 403):
        return CheckResult(
            name,
            Status.FAIL,
            f"{shown} refused the key: HTTP {answer.status}",
            "copy the DSN again from the project's Client Keys settings",
        )
    detail = answer.problem or f"HTTP {answer.status}"
    return CheckResult(
        name,
        Status.FAIL,
        f"{shown}: {detail}",
        "check the DSN's host and port are reachable from here, or set "
        "TELEMETRY_SENTRY_TRACES=envelope/off",
    )
