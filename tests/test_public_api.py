"""The curated public surface: sorted, complete, and every name importable."""

from __future__ import annotations

import telemetry

DESIGN_API = {
    "setup_telemetry",
    "TelemetrySettings",
    "capture_exception",
    "capture_message",
    "set_user_context",
    "set_tag",
    "set_context",
    "start_transaction",
    "start_span",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(telemetry.__all__) == sorted(set(telemetry.__all__))


def test_all_holds_the_design_api_and_only_importable_names() -> None:
    assert set(telemetry.__all__) >= DESIGN_API
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(telemetry).items()
        if not name.startswith("_") and not isinstance(value, type(telemetry))
    }
    assert public == set(telemetry.__all__)
