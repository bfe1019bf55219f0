"""One request plants a distinct secret in every place a secret can ride along; then every
byte each sink received is searched for all of them."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from telemetry import TelemetrySettings
from telemetry.logs import JsonFormatter
from tests.integration._service import running_service
from tests.support.bugsink import Bugsink
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver

SECRETS = {
    "authorization header": "BearerSecretAAA111",
    "x-api-key header": "ApiKeySecretBBB222",
    "cookie": "CookieSecretCCC333",
    "query string": "QuerySecretDDD444",
    "json body": "BodySecretEEE555",
}


def plant_secrets(url: str) -> None:
    body = json.dumps({"user": "ann", "password": SECRETS["json body"]}).encode()
    request = urllib.request.Request(
        f"{url}/api/v1/login?token={SECRETS['query string']}&page=1",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {SECRETS['authorization header']}",
            "X-API-Key": SECRETS["x-api-key header"],
            "Cookie": f"session={SECRETS['cookie']}",
            "Content-Type": "application/json",
        },
    )
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        assert error.code == 500


def leaks(sink: str, data: bytes) -> list[str]:
    return [f"{sink}: {place}" for place, secret in SECRETS.items() if secret.encode() in data]


def metrics_bytes(url: str) -> bytes:
    request = urllib.request.Request(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
    return body


def settings(otlp: OTLPReceiver, dsn: str, mode: str) -> TelemetrySettings:
    return TelemetrySettings(
        environment="staging",
        service_name="scrub-test",
        sentry_dsn=dsn,
        sentry_traces=mode,
        otlp_endpoint=otlp.url,
    )


def test_no_secret_reaches_any_sink(
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    bugsink: Bugsink,
    postgres_url: str,
    redis_url: str,
) -> None:
    found: list[str] = []
    formatter = JsonFormatter("scrub-test", "staging")
    with running_service(
        settings(otlp_receiver, sentry_receiver.dsn, "otlp"), postgres_url, redis_url
    ) as (url, handle, logs):
        plant_secrets(url)
        handle.force_flush()
        [event] = sentry_receiver.wait_for("event", lambda e: "exception" in e)
        sentry_receiver.wait_for_spans(lambda s: s.name == "POST /api/v1/login")
        otlp_receiver.wait_for_spans(lambda s: s.name == "POST /api/v1/login")
        found += leaks("metrics", metrics_bytes(url))
        log_output = "\n".join(formatter.format(r) for r in logs.records).encode()
        found += leaks("logs", log_output)
    found += leaks("sentry events and sentry OTLP", sentry_receiver.raw_bytes())
    found += leaks("jaeger OTLP", otlp_receiver.raw_bytes())
    # The request was really carried to the sinks, only without its secrets.
    assert event["request"]["headers"]
    assert b"/api/v1/login" in otlp_receiver.raw_bytes()
    assert any("login failed" in r.getMessage() for r in logs.records)

    project = bugsink.create_project()
    with running_service(settings(otlp_receiver, project.dsn, "off"), postgres_url, redis_url) as (
        url,
        handle,
        _,
    ):
        plant_secrets(url)
        handle.force_flush()
        stored = bugsink.wait_for_event(project, lambda e: True, timeout=20)
    stored_json: Any = stored.data
    found += leaks("bugsink stored event", json.dumps(stored_json).encode())
    assert not found, f"secrets leaked: {found}"


def test_log_records_keep_trace_ids_while_scrubbed(caplog: Any) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("abc123zz",), None)
    formatted = JsonFormatter("svc", "staging").format(record)
    assert "abc123zz" not in formatted
