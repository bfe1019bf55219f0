"""Adopting an app's own sentry-sdk client: what is kept, and when setup refuses."""

from __future__ import annotations

from typing import Any

import pytest

from telemetry.profile import adopt_sentry_client, resolve_profile
from telemetry.settings import TelemetryConfigError, TelemetrySettings

DSN = "https://publickey@o1.ingest.example.com/42"


def client_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "dsn": DSN,
        "release": "shop@9",
        "environment": "prod-eu",
        "sample_rate": 1.0,
        "traces_sample_rate": None,
        "before_send": None,
    }
    options.update(overrides)
    return options


@pytest.mark.usefixtures("clean_env")
def test_the_clients_options_fill_what_the_bridge_left_unset() -> None:
    def hook(event: Any, hint: Any) -> Any:
        return event

    settings = adopt_sentry_client(
        TelemetrySettings(environment="production"),
        client_options(sample_rate=0.5, traces_sample_rate=0.2, before_send=hook),
    )
    assert settings.sentry_dsn is not None and settings.sentry_dsn.get_secret_value() == DSN
    assert settings.release == "shop@9"
    assert settings.sentry_environment_name == "prod-eu"
    assert settings.errors_sample_rate == 0.5
    assert settings.before_send is hook
    profile = resolve_profile(settings)
    assert profile.sentry_enabled
    assert (profile.traces_sample_rate, profile.traces_rate_source) == (
        0.2,
        "SENTRY_TRACES_SAMPLE_RATE",
    )


@pytest.mark.usefixtures("clean_env")
def test_the_bridges_contract_names_still_win_over_the_clients_traces_rate() -> None:
    settings = adopt_sentry_client(
        TelemetrySettings(environment="production", traces_sample_rate=0.05),
        client_options(traces_sample_rate=0.2),
    )
    assert resolve_profile(settings).traces_sample_rate == 0.05


@pytest.mark.usefixtures("clean_env")
def test_the_same_dsn_given_twice_is_no_conflict() -> None:
    settings = adopt_sentry_client(
        TelemetrySettings(environment="production", sentry_dsn=DSN + "/"), client_options()
    )
    assert settings.sentry_dsn is not None


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("given", "options", "named"),
    [
        ({"sentry_dsn": "https://other@o1.ingest.example.com/7"}, {}, "SENTRY_DSN"),
        ({"errors_sample_rate": 1.0}, {"sample_rate": 0.3}, "TELEMETRY_ERRORS_SAMPLE_RATE"),
        ({"SENTRY_TRACES_SAMPLE_RATE": 0.9}, {"traces_sample_rate": 0.1}, "SENTRY_TRACES"),
        ({"before_send": lambda e, h: e}, {"before_send": lambda e, h: e}, "before_send"),
    ],
    ids=["dsn", "errors-rate", "traces-rate", "before-send"],
)
def test_a_conflict_is_refused_with_what_to_do(
    given: dict[str, Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(TelemetryConfigError) as error:
        adopt_sentry_client(
            TelemetrySettings(environment="production", **given), client_options(**options)
        )
    assert named in str(error.value)
    assert "sentry_sdk.init()" in str(error.value)
