from __future__ import annotations

import sys
from pathlib import Path

import pytest

from telemetry.profile import resolve_profile
from telemetry.settings import (
    Environment,
    SentryTracesMode,
    TelemetryConfigError,
    load_settings,
    parse_dsn,
)

DSN = "https://publickey123@o1.ingest.example.io/42"


@pytest.fixture(autouse=True)
def _clean(clean_env: Path) -> None:
    """Every test here starts from no telemetry variable and no .env."""


def test_defaults_are_the_contract() -> None:
    settings = load_settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.service_name == "agentic-platform"
    assert settings.service_version == "0.0.0"
    assert settings.release == "agentic-platform@0.0.0"
    assert settings.sentry_traces is SentryTracesMode.OTLP
    assert settings.jaeger_traces_endpoint is None
    assert settings.critical_routes == ["/api/v1/agents/execute"]
    assert settings.excluded_routes == ["/health/*", "/metrics"]


def test_development_keeps_sentry_off_even_with_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", DSN)
    profile = resolve_profile(load_settings())
    assert not profile.sentry_enabled
    assert profile.sentry_disabled_reason == "development profile"
    assert profile.traces_sample_rate == 0.0
    assert not profile.export_traces


def test_development_traces_everything_once_an_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    settings = load_settings()
    assert resolve_profile(settings).export_traces
    assert resolve_profile(settings).traces_sample_rate == 1.0
    assert settings.jaeger_traces_endpoint == "http://jaeger:4318/v1/traces"


@pytest.mark.parametrize(
    ("environment", "traces", "profiles"),
    [
        # On 3.11 the staging profiler is opt-in (a sampling-profiler frame race).
        ("staging", 1.0, 1.0 if sys.version_info >= (3, 12) else 0.0),
        ("production", 0.1, 0.1),
        ("PRODUCTION", 0.1, 0.1),
    ],
)
def test_profiles(
    monkeypatch: pytest.MonkeyPatch, environment: str, traces: float, profiles: float
) -> None:
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("SENTRY_DSN", DSN)
    profile = resolve_profile(load_settings())
    assert profile.sentry_enabled
    assert (profile.traces_sample_rate, profile.profiles_sample_rate) == (traces, profiles)


def test_staging_profiler_opt_in_on_python_311(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("TELEMETRY_PROFILES_SAMPLE_RATE", "1.0")
    assert resolve_profile(load_settings()).profiles_sample_rate == 1.0


def test_rate_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SENTRY_DSN", DSN)
    monkeypatch.setenv("TELEMETRY_TRACES_SAMPLE_RATE", "0.05")
    monkeypatch.setenv("TELEMETRY_PROFILES_SAMPLE_RATE", "0")
    profile = resolve_profile(load_settings())
    assert (profile.traces_sample_rate, profile.profiles_sample_rate) == (0.05, 0.0)


def test_traces_endpoint_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom")
    assert load_settings().jaeger_traces_endpoint == "http://b:4318/custom"


def test_code_and_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("ENVIRONMENT=staging\nOTEL_SERVICE_NAME=from-dotenv\n")
    settings = load_settings()
    assert settings.environment is Environment.STAGING
    assert settings.service_name == "from-dotenv"
    in_code = load_settings(environment="production", service_name="svc", service_version="1.2")
    assert in_code.release == "svc@1.2"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ENVIRONMENT", "prod", "'development', 'staging' or 'production'"),
        ("TELEMETRY_TRACES_SAMPLE_RATE", "1.5", "less than or equal to 1"),
        ("TELEMETRY_PROFILES_SAMPLE_RATE", "-0.1", "greater than or equal to 0"),
        ("TELEMETRY_SENTRY_TRACES", "jaeger", "'otlp', 'envelope' or 'off'"),
        ("SENTRY_DSN", "https://o1.ingest.example.io/42", "no public key"),
        ("SENTRY_DSN", "ftp://k@host/1", "https://"),
        ("SENTRY_DSN", "https://k@host/project", "numeric project id"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318", "http(s) URL"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", "'http/protobuf' or 'grpc'"),
    ],
)
def test_bad_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(TelemetryConfigError) as info:
        load_settings()
    message = str(info.value)
    assert variable in message
    assert expected in message


def test_error_never_echoes_the_dsn_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTRY_DSN", "https://supersecretkey@host/notanumber")
    with pytest.raises(TelemetryConfigError) as info:
        load_settings()
    assert "supersecretkey" not in str(info.value)


def test_parse_dsn() -> None:
    dsn = parse_dsn("https://abc@sentry.example.com:8443/prefix/7")
    assert dsn.public_key == "abc"
    assert dsn.project_id == "7"
    assert dsn.otlp_traces_url == (
        "https://sentry.example.com:8443/prefix/api/7/integration/otlp/v1/traces"
    )
    assert "abc" not in dsn.redacted


def test_dsn_trailing_slash_accepted_as_sentry_sdk_would_take_it() -> None:
    from sentry_sdk.utils import Dsn

    settings = load_settings(sentry_dsn="https://key@sentry.example/1/")
    assert settings.sentry_dsn is not None
    value = settings.sentry_dsn.get_secret_value()
    assert value == "https://key@sentry.example/1"
    assert Dsn(value).project_id == "1"  # sentry-sdk takes what the settings keep


def test_dsn_sentry_sdk_rejects_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="project id"):
        parse_dsn("https://key@sentry.example/abc/")
    with pytest.raises((ValueError, TelemetryConfigError)):
        load_settings(sentry_dsn="https://key@sentry.example/abc/")
