"""The configuration contract: one pydantic-settings model, read once at start.

Every environment variable the library honours is declared here and nowhere else.
Fields come from the environment (and a ``.env`` file) when not given in code.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
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
#: The OTel specification's samplers this library maps onto its own (OTEL_TRACES_SAMPLER).
STANDARD_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


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
        # No populate_by_name: with it pydantic-settings also reads the bare field names
        # from the environment (SPAN_QUEUE_SIZE, LOG_LEVEL), so an app's own variables
        # would configure, or break, the library. Code passes field names through __init__.
        case_sensitive=False,
        arbitrary_types_allowed=True,
    )

    environment: Environment = Field(Environment.DEVELOPMENT, validation_alias=_env("ENVIRONMENT"))
    sentry_dsn: SecretStr | None = Field(None, validation_alias=_env("SENTRY_DSN"))
    service_name: str = Field(DEFAULT_SERVICE_NAME, validation_alias=_env("OTEL_SERVICE_NAME"))
    service_version: str | None = Field(None, validation_alias=_env("SERVICE_VERSION"))
    otlp_endpoint: str | None = Field(None, validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"))
    otlp_traces_endpoint: str | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf",
        validation_alias=_env("OTEL_EXPORTER_OTLP_PROTOCOL"),
    )
    otlp_headers: SecretStr | None = Field(
        None,
        validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    )
    export_mode: Literal["direct", "collector"] = Field(
        "direct", validation_alias=_env("TELEMETRY_EXPORT")
    )
    sentry_traces: SentryTracesMode = Field(
        SentryTracesMode.OTLP, validation_alias=_env("TELEMETRY_SENTRY_TRACES")
    )
    traces_sample_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_TRACES_SAMPLE_RATE"),
    )
    profiles_sample_rate: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_PROFILES_SAMPLE_RATE"),
    )
    errors_sample_rate: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TELEMETRY_ERRORS_SAMPLE_RATE"),
    )
    critical_routes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/api/v1/agents/execute"],
        validation_alias=_env("TELEMETRY_CRITICAL_ROUTES"),
    )
    excluded_routes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/health/*", "/metrics"],
        validation_alias=_env("TELEMETRY_EXCLUDED_ROUTES"),
    )
    asyncio_coroutines: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_ASYNCIO_COROUTINES"),
    )
    metrics_enabled: bool = Field(True, validation_alias=_env("TELEMETRY_METRICS"))
    metrics_path: str = Field("/metrics", validation_alias=_env("TELEMETRY_METRICS_PATH"))
    apdex_threshold_seconds: float = Field(
        0.5,
        gt=0.0,
        validation_alias=_env("TELEMETRY_APDEX_THRESHOLD_SECONDS"),
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=_env("TELEMETRY_LOG_FORMAT")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("TELEMETRY_LOG_LEVEL")
    )
    scrub_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("TELEMETRY_SCRUB_FIELDS")
    )
    scrub_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_SCRUB_PATTERNS"),
    )
    scrub_user_email: bool = Field(False, validation_alias=_env("TELEMETRY_SCRUB_USER_EMAIL"))
    max_request_body_bytes: int = Field(
        10_000,
        ge=0,
        validation_alias=_env("TELEMETRY_MAX_REQUEST_BODY_BYTES"),
    )
    cache_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [""],
        validation_alias=_env("TELEMETRY_CACHE_PREFIXES"),
    )
    file_sink_dir: Path | None = Field(None, validation_alias=_env("TELEMETRY_FILE_SINK_DIR"))
    span_queue_size: int = Field(2048, ge=1, validation_alias=_env("TELEMETRY_SPAN_QUEUE_SIZE"))
    export_timeout_seconds: float = Field(
        5.0,
        gt=0.0,
        validation_alias=_env("TELEMETRY_EXPORT_TIMEOUT_SECONDS"),
    )
    shutdown_timeout_seconds: float = Field(
        5.0,
        gt=0.0,
        validation_alias=_env("TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS"),
    )
    propagation_targets: Annotated[list[str], NoDecode] | None = Field(
        None, validation_alias=_env("TELEMETRY_PROPAGATION_TARGETS")
    )
    #: ``contrib``: opentelemetry-instrumentation-fastapi; ``native``: FastAPI's own
    #: ``telemetry`` (FastAPI >= 0.142) with the bridge's provider, operation spans kept.
    fastapi_instrumentation: Literal["contrib", "native"] = Field(
        "contrib", validation_alias=_env("TELEMETRY_FASTAPI_INSTRUMENTATION")
    )
    # -- the standard OTel and Sentry variables: below the contract's own names ----------
    sdk_disabled: bool = Field(False, validation_alias=_env("OTEL_SDK_DISABLED"))
    otel_traces_sampler: str | None = Field(None, validation_alias=_env("OTEL_TRACES_SAMPLER"))
    otel_traces_sampler_arg: str | None = Field(
        None, validation_alias=_env("OTEL_TRACES_SAMPLER_ARG")
    )
    otel_propagators: Annotated[list[str], NoDecode] | None = Field(
        None, validation_alias=_env("OTEL_PROPAGATORS")
    )
    otel_traces_exporter: Literal["otlp", "none"] = Field(
        "otlp", validation_alias=_env("OTEL_TRACES_EXPORTER")
    )
    resource_attributes: SecretStr | None = Field(
        None, validation_alias=_env("OTEL_RESOURCE_ATTRIBUTES")
    )
    otlp_compression: Literal["gzip", "none"] = Field(
        "gzip",
        validation_alias=_env(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"
        ),
    )
    otlp_timeout_ms: float | None = Field(
        None,
        gt=0.0,
        validation_alias=_env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
    )
    otlp_certificate: Path | None = Field(
        None,
        validation_alias=_env(
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"
        ),
    )
    otlp_client_certificate: Path | None = Field(
        None,
        validation_alias=_env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"
        ),
    )
    otlp_client_key: Path | None = Field(
        None,
        validation_alias=_env(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ),
    )
    sentry_release: str | None = Field(None, validation_alias=_env("SENTRY_RELEASE"))
    sentry_environment: str | None = Field(None, validation_alias=_env("SENTRY_ENVIRONMENT"))
    sentry_traces_sample_rate: float | None = Field(
        None, ge=0.0, le=1.0, validation_alias=_env("SENTRY_TRACES_SAMPLE_RATE")
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
    _release_from_sentry: bool = PrivateAttr(False)
    # What an app's own sentry_sdk.init() client said (adopted by setup_telemetry).
    _client_release: str | None = PrivateAttr(None)
    _client_environment: str | None = PrivateAttr(None)
    traces_sampler: TracesSampler | None = Field(None, exclude=True)
    before_send: BeforeSend | None = Field(None, exclude=True)

    @field_validator(
        "critical_routes",
        "excluded_routes",
        "scrub_fields",
        "scrub_patterns",
        "asyncio_coroutines",
        "cache_prefixes",
        "propagation_targets",
        "otel_propagators",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        return _csv(value)

    def __init__(self, **values: Any) -> None:
        # Code passes field names (TelemetrySettings(environment="staging")); the model
        # validates aliases only (see model_config), so each name is handed over as its
        # contract name. An argument in code still wins over the environment.
        super().__init__(**{_FIELD_ALIAS.get(key, key): value for key, value in values.items()})

    @field_validator(
        "environment", "sentry_traces", "otel_traces_sampler", "otel_traces_exporter",
        "fastapi_instrumentation", mode="before",
    )  # fmt: skip
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

    @field_validator("propagation_targets")
    @classmethod
    def _targets_compile(cls, value: list[str] | None) -> list[str] | None:
        for target in value or ():
            try:
                re.compile(target)
            except re.error as exc:
                raise ValueError(f"{target!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("otel_traces_sampler")
    @classmethod
    def _standard_sampler(cls, value: str | None) -> str | None:
        if value is not None and value not in STANDARD_SAMPLERS:
            raise ValueError(f"must be one of {', '.join(sorted(STANDARD_SAMPLERS))}")
        return value

    @field_validator("otel_traces_sampler_arg")
    @classmethod
    def _sampler_ratio(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            try:
                ratio = float(value)
            except ValueError:
                raise ValueError("must be a ratio in [0, 1]") from None
            if not 0.0 <= ratio <= 1.0:
                raise ValueError("must be a ratio in [0, 1]")
        return value

    @model_validator(mode="before")
    @classmethod
    def _sentry_environment_maps_onto_the_profile(cls, data: Any) -> Any:
        """``SENTRY_ENVIRONMENT`` chooses the profile when ``ENVIRONMENT`` is unset."""
        if not isinstance(data, dict):
            return data
        lowered = {str(k).lower(): k for k in data}
        if "environment" in lowered or "sentry_environment" not in lowered:
            return data
        value = data[lowered["sentry_environment"]]
        if not isinstance(value, str) or not value.strip():
            return data
        name = _ENVIRONMENT_ALIASES.get(value.strip().lower(), value.strip().lower())
        if name not in {e.value for e in Environment}:
            raise ValueError(
                f"SENTRY_ENVIRONMENT={value!r} chooses the profile while ENVIRONMENT is unset, "
                "and it is none of development, staging, production: set ENVIRONMENT too"
            )
        return {**data, "ENVIRONMENT": name}

    @model_validator(mode="after")
    def _standard_defaults(self) -> TelemetrySettings:
        """The standard variables fill what the contract's own names left unset."""
        resource = self.resource_attribute_map
        explicit = self.model_fields_set
        if "service_name" not in explicit and resource.get("service.name"):
            self.service_name = resource["service.name"]
        if "export_timeout_seconds" not in explicit and self.otlp_timeout_ms is not None:
            # The OTel specification's unit is milliseconds.
            self.export_timeout_seconds = self.otlp_timeout_ms / 1000
        return self

    @model_validator(mode="after")
    def _version_default(self) -> TelemetrySettings:
        self._release_from_sentry = False
        if not self.service_version:
            resource_version = self.resource_attribute_map.get("service.version")
            if resource_version:
                self.service_version = resource_version
            elif self.sentry_release:
                # SENTRY_RELEASE names the release as it is; SERVICE_VERSION would win.
                self._release_from_sentry = True
                self.service_version = _installed_version(self.service_name)
            else:
                self.service_version = _installed_version(self.service_name)
        return self

    # -- derived values -------------------------------------------------------------

    def with_sentry_client(
        self, update: Mapping[str, Any], release: str | None, environment: str | None
    ) -> TelemetrySettings:
        """A copy with what an app's existing sentry-sdk client decided (``profile``
        chooses what is taken): its release and environment name the Sentry side."""
        copy = self.model_copy(update=dict(update))
        copy._client_release = release or None
        copy._client_environment = environment or None
        return copy

    @property
    def sentry_environment_name(self) -> str:
        """The environment Sentry events and the trace's baggage carry: the app's own
        sentry-sdk client's when it was adopted, else the profile's name."""
        return self._client_environment or self.environment.value

    @property
    def release(self) -> str:
        if self._client_release:
            return self._client_release
        if self._release_from_sentry and self.sentry_release:
            return self.sentry_release
        return f"{self.service_name}@{self.service_version}"

    @property
    def resource_attribute_map(self) -> dict[str, str]:
        """``OTEL_RESOURCE_ATTRIBUTES`` (``key=value,...``, values URL-encoded)."""
        if self.resource_attributes is None:
            return {}
        return _key_values(self.resource_attributes.get_secret_value())

    @property
    def jaeger_traces_endpoint(self) -> str | None:
        """The OTLP traces URL, with the standard OTel meaning of both variables;
        ``OTEL_TRACES_EXPORTER=none`` turns it off."""
        if self.otel_traces_exporter == "none":
            return None
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
        return _key_values(self.otlp_headers.get_secret_value())


def _key_values(text: str) -> dict[str, str]:
    """The OTel ``key=value,key2=value2`` list format, keys and values URL-decoded."""
    pairs: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


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


_ENVIRONMENT_ALIASES = {"prod": "production", "stage": "staging", "dev": "development"}

_FIELD_TO_ENV: dict[str, str] = {
    name: str(
        field.validation_alias.choices[0]
        if isinstance(field.validation_alias, AliasChoices)
        else name
    )
    for name, field in TelemetrySettings.model_fields.items()
}


#: Field name -> its contract name, for arguments given in code.
_FIELD_ALIAS = {name: env for name, env in _FIELD_TO_ENV.items() if env != name}


def _describe(exc: ValidationError) -> str:
    lines = ["invalid telemetry configuration:"]
    for error in exc.errors(include_url=False):
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if not error.get("loc"):
            # A rule across variables: its message names them.
            lines.append(f"  {message}")
            continue
        loc = error["loc"]
        field = str(loc[0])
        env_name = _FIELD_TO_ENV.get(field, field)
        value = error.get("input")
        shown = "<secret>" if "dsn" in env_name.lower() else repr(value)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"  {env_name}={shown}: {message}")
    return "\n".join(lines)
