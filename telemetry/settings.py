"""The configuration contract: one pydantic-settings model, read once at start.

Every environment variable the library honours is declared here and nowhere else.
Fields come from the environment (and a ``.env`` file) when not given in code.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from telemetry.dsn import ParsedDsn, normalise_dsn, parse_dsn

__all__ = [
    "Environment",
    "ParsedDsn",
    "SentryTracesMode",
    "TelemetryConfigError",
    "TelemetrySettings",
    "load_settings",
    "parse_dsn",
]

DEFAULT_SERVICE_NAME = "agentic-platform"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class SentryTracesMode(StrEnum):
    OTLP = "otlp"
    ENVELOPE = "envelope"
    OFF = "off"


class TelemetryConfigError(ValueError):
    """Raised at start when a setting is invalid; the message names the variable."""


#: Called with the sampling inputs of a root span; returns a rate in [0, 1] or None to
#: fall through to the profile's rate.
TracesSampler = Callable[[Mapping[str, Any]], float | None]
BeforeSend = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


def _csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class TelemetrySettings(BaseSettings):
    """Everything ``setup_telemetry`` needs; field aliases are the public env names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
        arbitrary_types_allowed=True,
    )

    environment: Environment = Field(
        Environment.DEVELOPMENT, validation_alias=_env("ENVIRONMENT", "environment")
    )
    sentry_dsn: SecretStr | None = Field(None, validation_alias=_env("SENTRY_DSN", "sentry_dsn"))
    service_name: str = Field(
        DEFAULT_SERVICE_NAME, validation_alias=_env("OTEL_SERVICE_NAME", "service_name")
    )
    service_version: str | None = Field(
        None, validation_alias=_env("SERVICE_VERSION", "service_version")
    )
    otlp_endpoint: str | None = Field(
        None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint")
    )
    otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp_traces_endpoint"),
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf",
        validation_alias=_env("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol"),
    )
    otlp_headers: SecretStr | None = Field(
        None,
        validation_alias=_env(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS", "otlp_headers"
        ),
    )
    export_mode: Literal["direct", "collector"] = Field(
        "direct", validation_alias=_env("TELEMETRY_EXPORT", "export_mode")
    )
    sentry_traces: SentryTracesMode = Field(
        SentryTracesMode.OTLP, validation_alias=_env("TELEMETRY_SENTRY_TRACES", "sentry_traces")
    )
    traces_sample_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_TRACES_SAMPLE_RATE", "traces_sample_rate"),
    )
    profiles_sample_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_PROFILES_SAMPLE_RATE", "profiles_sample_rate"),
    )
    errors_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_ERRORS_SAMPLE_RATE", "errors_sample_rate"),
    )
    critical_routes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/api/v1/agents/execute"],
        validation_alias=_env("TELEMETRY_CRITICAL_ROUTES", "critical_routes"),
    )
    excluded_routes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/health/*", "/metrics"],
        validation_alias=_env("TELEMETRY_EXCLUDED_ROUTES", "excluded_routes"),
    )
    asyncio_coroutines: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_ASYNCIO_COROUTINES", "asyncio_coroutines"),
    )
    metrics_enabled: bool = Field(
        True, validation_alias=_env("TELEMETRY_METRICS", "metrics_enabled")
    )
    metrics_path: str = Field(
        "/metrics", validation_alias=_env("TELEMETRY_METRICS_PATH", "metrics_path")
    )
    apdex_threshold_seconds: float = Field(
        0.5,
        gt=0.0,
        validation_alias=_env("TELEMETRY_APDEX_THRESHOLD_SECONDS", "apdex_threshold_seconds"),
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=_env("TELEMETRY_LOG_FORMAT", "log_format")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("TELEMETRY_LOG_LEVEL", "log_level")
    )
    scrub_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("TELEMETRY_SCRUB_FIELDS", "scrub_fields")
    )
    scrub_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_SCRUB_PATTERNS", "scrub_patterns"),
    )
    scrub_user_email: bool = Field(
        False, validation_alias=_env("TELEMETRY_SCRUB_USER_EMAIL", "scrub_user_email")
    )
    max_request_body_bytes: int = Field(
        10_000,
        ge=0,
        validation_alias=_env("TELEMETRY_MAX_REQUEST_BODY_BYTES", "max_request_body_bytes"),
    )
    cache_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [""],
        validation_alias=_env("TELEMETRY_CACHE_PREFIXES", "cache_prefixes"),
    )
    file_sink_dir: Path | None = Field(
        None, validation_alias=_env("TELEMETRY_FILE_SINK_DIR", "file_sink_dir")
    )
    span_queue_size: int = Field(
        2048, ge=1, validation_alias=_env("TELEMETRY_SPAN_QUEUE_SIZE", "span_queue_size")
    )
    export_timeout_seconds: float = Field(
        5.0,
        gt=0.0,
        validation_alias=_env("TELEMETRY_EXPORT_TIMEOUT_SECONDS", "export_timeout_seconds"),
    )
    shutdown_timeout_seconds: float = Field(
        5.0,
        gt=0.0,
        validation_alias=_env("TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS", "shutdown_timeout_seconds"),
    )
    # GenAI: message content (prompts, completions, tool arguments) stays off the spans unless
    # asked for; when on, it is scrubbed like every attribute (telemetry.scrubbing.messages).
    # OTel's own variable is honoured below the contract's name.
    genai_capture_content: Literal["no_content", "span_only", "event_only", "span_and_event"] = (
        Field(
            "no_content",
            validation_alias=_env(
                "TELEMETRY_GENAI_CAPTURE_CONTENT",
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                "genai_capture_content",
            ),
        )
    )
    # Extra or overriding model prices, USD per million tokens (telemetry.genai.prices).
    genai_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, validation_alias=_env("TELEMETRY_GENAI_PRICES", "genai_prices")
    )
    # Code-only hooks: a callable cannot come from the environment.
    traces_sampler: TracesSampler | None = Field(None, exclude=True)
    before_send: BeforeSend | None = Field(None, exclude=True)

    @field_validator(
        "critical_routes",
        "excluded_routes",
        "scrub_fields",
        "scrub_patterns",
        "asyncio_coroutines",
        "cache_prefixes",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        return _csv(value)

    @field_validator("environment", "sentry_traces", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("genai_capture_content", mode="before")
    @classmethod
    def _capture_flag(cls, value: Any) -> Any:
        # util-genai's names, any case; a boolean reads as "on the span" or "off".
        if isinstance(value, bool):
            return "span_only" if value else "no_content"
        if isinstance(value, str):
            flag = value.strip().lower()
            return {"true": "span_only", "1": "span_only", "false": "no_content", "0": "no_content",
                    "": "no_content"}.get(flag, flag)  # fmt: skip
        return value

    @field_validator("sentry_dsn", mode="before")
    @classmethod
    def _empty_dsn_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _dsn_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_dsn(value.get_secret_value())
            # What sentry-sdk, the doctor and every other reader get: a trailing slash
            # after the project id is accepted here rather than failing in sentry-sdk.
            return SecretStr(normalise_dsn(value.get_secret_value()))
        return value

    @field_validator("otlp_endpoint", "otlp_traces_endpoint", mode="before")
    @classmethod
    def _endpoint_is_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http(s) URL such as http://jaeger:4318")
            return value.strip()
        return value

    @model_validator(mode="after")
    def _collector_needs_an_endpoint(self) -> TelemetrySettings:
        if self.export_mode == "collector" and not (
            self.otlp_endpoint or self.otlp_traces_endpoint
        ):
            raise ValueError(
                "TELEMETRY_EXPORT=collector needs OTEL_EXPORTER_OTLP_ENDPOINT (the Collector)"
            )
        return self

    @model_validator(mode="after")
    def _version_default(self) -> TelemetrySettings:
        if not self.service_version:
            self.service_version = _installed_version(self.service_name)
        return self

    # -- derived values -------------------------------------------------------------

    @property
    def release(self) -> str:
        return f"{self.service_name}@{self.service_version}"

    @property
    def jaeger_traces_endpoint(self) -> str | None:
        """The OTLP traces URL, with the standard OTel meaning of both variables."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        if not self.otlp_endpoint:
            return None
        if self.otlp_protocol == "grpc":
            return self.otlp_endpoint
        return self.otlp_endpoint.rstrip("/") + "/v1/traces"

    @property
    def otlp_header_map(self) -> dict[str, str]:
        """``OTEL_EXPORTER_OTLP_HEADERS`` (``key=value,key2=value2``, values URL-encoded)."""
        if self.otlp_headers is None:
            return {}
        headers: dict[str, str] = {}
        for pair in self.otlp_headers.get_secret_value().split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                headers[unquote(key.strip())] = unquote(value.strip())
        return headers


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def load_settings(**overrides: Any) -> TelemetrySettings:
    """Build settings from the environment, turning validation errors into one clear
    ``TelemetryConfigError`` that names each variable and what it accepts."""
    try:
        return TelemetrySettings(**overrides)
    except ValidationError as exc:
        raise TelemetryConfigError(_describe(exc)) from None


_FIELD_TO_ENV: dict[str, str] = {
    name: str(
        field.validation_alias.choices[0]
        if isinstance(field.validation_alias, AliasChoices)
        else name
    )
    for name, field in TelemetrySettings.model_fields.items()
}


def _describe(exc: ValidationError) -> str:
    lines = ["invalid telemetry configuration:"]
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ("settings",)
        field = str(loc[0])
        env_name = _FIELD_TO_ENV.get(field, field)
        value = error.get("input")
        shown = "<secret>" if "dsn" in env_name.lower() else repr(value)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"  {env_name}={shown}: {message}")
    return "\n".join(lines)
