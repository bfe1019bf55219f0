"""The standard OTEL_* and SENTRY_* variables, each with its documented precedence:

explicit argument > TELEMETRY_* and the contract's names > standard OTEL_*/SENTRY_* >
profile default; bare field names never configure anything.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from telemetry import setup_telemetry
from telemetry.profile import resolve_profile
from telemetry.settings import (
    Environment,
    TelemetryConfigError,
    TelemetrySettings,
    load_settings,
)
from telemetry.shared import NullCounters, OTLPHttpTarget
from telemetry.tracing import FanOutExporter, RouteAwareSampler, build_resource
from telemetry.tracing.propagation import build_propagator
from tests.support.otlp_receiver import OTLPReceiver

DSN = "https://publickey123@o1.ingest.example.io/42"


@pytest.fixture(autouse=True)
def _clean(clean_env: Path) -> None:
    """No telemetry variable in the environment and no .env."""


# -- bare field names (trap 15) ------------------------------------------------------


def test_bare_field_names_configure_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SPAN_QUEUE_SIZE": "not-a-number",
        "LOG_LEVEL": "nonsense",
        "SERVICE_NAME": "from-bare-name",
        "OTLP_ENDPOINT": "http://bare:4318",
        "ENVIRONMENT_": "x",
        "TRACES_SAMPLE_RATE": "7",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.span_queue_size == 2048
    assert settings.log_level == "INFO"
    assert settings.service_name == "agentic-platform"
    assert settings.otlp_endpoint is None
    assert settings.traces_sample_rate is None


def test_code_arguments_by_field_name_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("TELEMETRY_SPAN_QUEUE_SIZE", "10")
    settings = TelemetrySettings(environment="staging", span_queue_size=5)
    assert settings.environment is Environment.STAGING
    assert settings.span_queue_size == 5


# -- OTEL_SDK_DISABLED ---------------------------------------------------------------


def test_sdk_disabled_builds_no_span_pipeline_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("TELEMETRY_FILE_SINK_DIR", str(tmp_path))
    profile = resolve_profile(load_settings())
    assert not profile.tracing_enabled
    assert profile.traces_sample_rate == 0.0
    with caplog.at_level(logging.INFO, logger="telemetry"):
        handle = setup_telemetry()
    line = next(r.getMessage() for r in caplog.records if "telemetry_initialized" in r.getMessage())
    assert "tracing=off (OTEL_SDK_DISABLED)" in line or "OTEL_SDK_DISABLED" in line
    assert "traces=0.0" in line
    with handle.tracer_provider.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()
    handle.shutdown()
    assert not (tmp_path / "spans.otlp.jsonl").exists()


# -- OTEL_TRACES_SAMPLER / _ARG, SENTRY_TRACES_SAMPLE_RATE -----------------------------


@pytest.mark.parametrize(
    ("sampler", "arg", "rate", "follow_parent"),
    [
        ("always_on", None, 1.0, False),
        ("always_off", None, 0.0, False),
        ("traceidratio", "0.25", 0.25, False),
        ("parentbased_always_on", None, 1.0, True),
        ("parentbased_always_off", None, 0.0, True),
        ("parentbased_traceidratio", "0.5", 0.5, True),
        ("parentbased_traceidratio", None, 1.0, True),
    ],
)
def test_standard_samplers_map_onto_the_route_aware_sampler(
    monkeypatch: pytest.MonkeyPatch,
    sampler: str,
    arg: str | None,
    rate: float,
    follow_parent: bool,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    profile = resolve_profile(load_settings())
    assert profile.traces_sample_rate == rate
    assert profile.follow_parent is follow_parent
    assert profile.traces_rate_source == "OTEL_TRACES_SAMPLER"


def test_route_rules_apply_on_top_of_a_standard_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    settings = load_settings()
    profile = resolve_profile(settings)
    sampler = RouteAwareSampler(
        profile.traces_sample_rate,
        critical_routes=settings.critical_routes,
        excluded_routes=settings.excluded_routes,
        follow_parent=profile.follow_parent,
    )
    health = sampler.should_sample(None, 1, "GET /health/live", SpanKind.SERVER)
    assert not health.decision.is_sampled(), "excluded routes stay untraced"
    # always_on is not parent-based: an unsampled parent does not stop a child.
    parent = SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    assert sampler.should_sample(ctx, 1, "child").decision.is_sampled()


def test_sampler_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.3")
    assert resolve_profile(load_settings()).traces_sample_rate == 0.3
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.2")
    assert resolve_profile(load_settings()).traces_sample_rate == 0.2
    monkeypatch.setenv("TELEMETRY_TRACES_SAMPLE_RATE", "0.7")
    assert resolve_profile(load_settings()).traces_sample_rate == 0.7
    assert resolve_profile(load_settings(traces_sample_rate=0.9)).traces_sample_rate == 0.9


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
        ("SENTRY_ENVIRONMENT", "qa"),
        ("TELEMETRY_PROPAGATION_TARGETS", "api.(internal"),
    ],
)
def test_invalid_standard_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    # A variable with a signal-specific form is named by that (TRACES_) form.
    named = variable.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_(TRACES_)?")
    with pytest.raises(TelemetryConfigError, match=named):
        load_settings()


# -- OTEL_PROPAGATORS ----------------------------------------------------------------


def _injected(propagator: Any, ctx: Any = None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context=ctx)
    return carrier


def _sampled_context() -> Any:
    span_context = SpanContext(
        0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def test_default_propagator_is_the_projects() -> None:
    headers = _injected(build_propagator(None, None), _sampled_context())
    assert {"traceparent", "sentry-trace"} <= set(headers)


def test_users_propagators_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext,baggage")
    settings = load_settings()
    assert settings.otel_propagators == ["tracecontext", "baggage"]
    headers = _injected(build_propagator(settings.otel_propagators, None), _sampled_context())
    assert "traceparent" in headers and "sentry-trace" not in headers
    assert _injected(build_propagator(["none"], None), _sampled_context()) == {}
    with pytest.raises(ValueError, match="OTEL_PROPAGATORS"):
        build_propagator(["no-such-propagator"], None)


def test_setup_installs_the_users_propagators(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_PROPAGATORS", "tracecontext")
    handle = setup_telemetry(settings=load_settings(environment="staging", file_sink_dir=tmp_path))
    try:
        headers = _injected(get_global_textmap(), _sampled_context())
        assert "traceparent" in headers and "sentry-trace" not in headers
    finally:
        handle.shutdown()


# -- OTEL_RESOURCE_ATTRIBUTES --------------------------------------------------------


def test_resource_attributes_kept_and_contract_wins_only_where_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.name=from-res,service.version=4.2,team=core,deployment.environment=eu-prod",
    )
    settings = load_settings()
    attrs = build_resource(settings).attributes
    assert attrs["service.name"] == "from-res"
    assert attrs["service.version"] == "4.2"
    assert attrs["team"] == "core"
    assert attrs["deployment.environment"] == "eu-prod"
    assert settings.release == "from-res@4.2"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "contract-name")
    monkeypatch.setenv("SERVICE_VERSION", "5.0")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    attrs = build_resource(load_settings()).attributes
    assert attrs["service.name"] == "contract-name"
    assert attrs["service.version"] == "5.0"
    assert attrs["deployment.environment"] == "staging"
    assert attrs["team"] == "core"


# -- OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_* ----------------------------------------


def test_traces_exporter_none_turns_the_otlp_sink_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    assert load_settings().jaeger_traces_endpoint == "http://jaeger:4318/v1/traces"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    settings = load_settings(environment="staging")
    assert settings.jaeger_traces_endpoint is None
    assert not resolve_profile(settings).export_traces


def test_otlp_timeout_is_milliseconds_below_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")
    assert load_settings().export_timeout_seconds == 2.5
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1000")
    assert load_settings().export_timeout_seconds == 1.0
    monkeypatch.setenv("TELEMETRY_EXPORT_TIMEOUT_SECONDS", "3")
    assert load_settings().export_timeout_seconds == 3.0


def test_otlp_certificate_and_client_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/etc/c.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/k.pem")
    settings = load_settings()
    assert str(settings.otlp_certificate) == "/etc/ca.pem"
    assert str(settings.otlp_client_certificate) == "/etc/c.pem"
    assert str(settings.otlp_client_key) == "/etc/k.pem"
    fanout = FanOutExporter(
        [
            OTLPHttpTarget(
                "jaeger",
                "https://jaeger:4318/v1/traces",
                verify="/etc/ca.pem",
                client_cert=("/etc/c.pem", "/etc/k.pem"),
            )
        ],
        NullCounters(),
        scrub=None,
        max_queued_spans=10,
        timeout_s=1,
    )
    try:
        session = fanout.senders[0].session
        assert session.verify == "/etc/ca.pem"
        assert session.cert == ("/etc/c.pem", "/etc/k.pem")
    finally:
        fanout.shutdown()


def _spans(count: int, payload: int = 100) -> list[ReadableSpan]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for i in range(count):
        with tracer.start_as_current_span(f"s{i}") as span:
            span.set_attribute("payload", "x" * payload)
    return list(exporter.get_finished_spans())


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_otlp_compression_and_headers_reach_the_receiver(
    monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme,authorization=Bearer%20t"
    )
    if compression == "none":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "none")
    settings = load_settings()
    assert settings.otlp_compression == compression
    with OTLPReceiver() as receiver:
        fanout = FanOutExporter(
            [OTLPHttpTarget("jaeger", receiver.traces_endpoint, settings.otlp_header_map)],
            NullCounters(),
            scrub=None,
            max_queued_spans=1000,
            timeout_s=5,
            compression=settings.otlp_compression,
        )
        fanout.export(_spans(20))
        assert fanout.force_flush(5000)
        fanout.shutdown()
        received = receiver.wait_for_spans(count=20)
        request = receiver.requests()[0]
    assert len(received) == 20
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["authorization"] == "Bearer t"
    encoding = request.headers.get("content-encoding")
    assert encoding == ("gzip" if compression == "gzip" else None)


def test_gzip_by_default_once_per_batch_and_requests_bounded() -> None:
    sent: list[tuple[bytes, int]] = []
    fanout = FanOutExporter(
        [OTLPHttpTarget("a", "http://127.0.0.1:9/v1/traces")],
        NullCounters(),
        scrub=None,
        max_queued_spans=10_000,
        timeout_s=1,
        max_request_bytes=64 * 1024,
    )
    try:
        fanout.senders[0].submit = lambda body, count: sent.append((body, count))  # type: ignore[method-assign]
        fanout.export(_spans(200, payload=2000))
    finally:
        fanout.senders[0].health.disable("test")
        fanout.shutdown()
    assert sum(count for _, count in sent) == 200
    assert len(sent) > 1, "a batch above the bound is split"
    for body, _ in sent:
        assert len(gzip.decompress(body)) <= 64 * 1024


# -- SENTRY_DSN, SENTRY_RELEASE, SENTRY_ENVIRONMENT ------------------------------------


def test_sentry_dsn_turns_sentry_on_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("ENVIRONMENT", "production")
    assert resolve_profile(load_settings()).sentry_enabled


def test_sentry_release_below_service_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_RELEASE", "checkout@2024.06.1")
    assert load_settings().release == "checkout@2024.06.1"
    monkeypatch.setenv("SERVICE_VERSION", "3.1")
    assert load_settings().release == "agentic-platform@3.1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("production", Environment.PRODUCTION),
        ("prod", Environment.PRODUCTION),
        ("staging", Environment.STAGING),
    ],
)
def test_sentry_environment_maps_onto_the_profile_when_environment_is_unset(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: Environment
) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", value)
    settings = load_settings()
    assert settings.environment is expected
    assert resolve_profile(settings).sentry_enabled
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert load_settings().environment is Environment.DEVELOPMENT


# -- TELEMETRY_PROPAGATION_TARGETS and app baggage -------------------------------------


def test_propagation_targets_limit_where_headers_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRY_PROPAGATION_TARGETS", r"api\.internal,^https://billing/")
    settings = load_settings()
    propagator = build_propagator(None, None, settings.propagation_targets)
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    for url, expected in [
        ("https://api.internal/v1/x", True),
        ("https://billing/charge", True),
        ("https://api.openai.com/v1/chat", False),
    ]:
        with tracer.start_as_current_span("client", attributes={"url.full": url}):
            headers = _injected(propagator)
        assert ("traceparent" in headers) is expected, url
    # No URL known (not an HTTP client span): propagated as before.
    assert "traceparent" in _injected(propagator, _sampled_context())


def test_app_baggage_on_the_request_is_kept_with_sentrys_merged_in() -> None:
    from telemetry.tracing import DynamicSamplingContext

    dsc = DynamicSamplingContext("pk", "svc@1", "production", 1.0)
    propagator = build_propagator(None, dsc)
    ctx = baggage.set_baggage("from_context", "1", _sampled_context())
    carrier = {"Baggage": "app_key=app%20value,sentry-release=stale"}
    token = context.attach(ctx)
    try:
        propagator.inject(carrier)
    finally:
        context.detach(token)
    header = carrier.get("baggage") or carrier["Baggage"]
    assert "app_key=app%20value" in header
    assert "from_context=1" in header
    assert "sentry-public_key=pk" in header
    assert "sentry-release=svc%401" in header and "stale" not in header
