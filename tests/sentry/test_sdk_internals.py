"""sentry-sdk's private attributes the Sentry side relies on (``sentry/sdk_internals.py``):
fails loudly when a release renames or removes one."""

from __future__ import annotations

import inspect
import subprocess
import sys

import sentry_sdk
from sentry_sdk.transport import HttpTransport

from telemetry.sentry import sdk_internals
from telemetry.sentry.envelope import envelope_span_processor


def test_the_envelope_processor_hooks_exist() -> None:
    from sentry_sdk.integrations.opentelemetry.span_processor import SentrySpanProcessor

    for hook in ("_update_span_with_otel_data", "_update_transaction_with_otel_data"):
        parameters = list(inspect.signature(getattr(SentrySpanProcessor, hook)).parameters)
        assert parameters == ["self", "sentry_span", "otel_span"], hook
    sdk_processor = SentrySpanProcessor()
    ours = envelope_span_processor()
    assert type(ours) is not SentrySpanProcessor, "the singleton must not hand out the base"
    assert isinstance(ours, SentrySpanProcessor)
    assert isinstance(ours.otel_span_map, dict) and ours is not sdk_processor


def test_the_transport_hooks_exist() -> None:
    for hook, expected in (
        ("_handle_response", ["self", "response", "envelope"]),
        ("_request", ["self", "method", "endpoint_type", "body", "headers"]),
        ("_send_envelope", ["self", "envelope"]),
    ):
        assert list(inspect.signature(getattr(HttpTransport, hook)).parameters) == expected
    lost = inspect.signature(HttpTransport.record_lost_event).parameters
    assert list(lost)[:4] == ["self", "reason", "data_category", "item"]
    assert "quantity" in lost


def test_import_telemetry_does_not_load_sentrys_span_processor() -> None:
    probe = (
        "import sys, telemetry; "
        "print('sentry_sdk.integrations.opentelemetry.span_processor' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_scope_keeps_its_transaction_name_where_it_can_be_cleared() -> None:
    scope = sentry_sdk.get_current_scope().fork()
    scope.set_transaction_name("left-behind", source="custom")
    sdk_internals.clear_transaction_name(scope)
    assert scope._transaction is None
    assert scope._transaction_info == {}


def test_a_request_session_has_every_attribute_of_sentry_sdks_session() -> None:
    # sentry-sdk reads a scope's session as its own Session: one it gains in a release must
    # be there on the lighter one too (class default, or made on first use).
    from sentry_sdk.session import Session

    real = Session(release="r@1", environment="e", session_mode="request")
    light = sdk_internals.RequestSession("r@1", "e")
    for name, value in vars(real).items():
        assert type(getattr(light, name)) is type(value), name
    assert light.get_json_attrs(with_user_info=False) == real.get_json_attrs(with_user_info=False)
    assert light.truncated_started == real.truncated_started
    assert (light.session_mode, light.status, light.errors) == ("request", "ok", 0)


def test_sentry_sdks_task_factory_still_names_the_factory_it_wraps() -> None:
    import asyncio

    from sentry_sdk.integrations.asyncio import enable_asyncio_integration

    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", default_integrations=False)
    try:

        async def main() -> tuple[bool, object]:
            enable_asyncio_integration(task_spans=False)
            factory = asyncio.get_running_loop().get_task_factory()
            assert getattr(factory, "_is_sentry_task_factory", False)
            return sdk_internals._wrapped_task_factory(factory)

        # Known, and asyncio's default underneath: the server's request tasks can be plain.
        assert asyncio.run(main()) == (True, None)
    finally:
        sentry_sdk.get_client().close(timeout=1)
        sentry_sdk.init()
