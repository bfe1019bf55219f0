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
# Vectors no name next to the value gives away, or names beyond the old list.
SHAPE_SECRETS = {
    "route parameter": "RouteSecretFFF666",
    "sql literal": "SqlLiteralGGG777",
    "database error detail": "DbDetailHHH888",
    "free text after a sensitive word": "FreeTextIII999",
    "bot token in an outgoing URL path": "BotTokenJJJ000abcdefghijkl",
    "query sig": "SigKKK111",
    "query code": "OauthCodeLLL222",
    "query X-Amz-Signature": "AmzSigMMM333",
    "query X-Amz-Credential": "AmzCredNNN444",
    "query id_token_hint": "IdTokenHintOOO555",
    "header Authentication": "AuthnPPP666",
    "header X-Signature": "XSigQQQ777",
    "header X-Hub-Signature-256": "HubSigRRR888",
    "header Stripe-Signature": "StripeSigSSS999",
    "header X-Slack-Signature": "SlackSigTTT000",
    "header X-Access-Key": "AccessKeyUUU111",
    "header X-Credentials": "CredsVVV222",
    "body/local signing_key": "SigningKeyWWW333",
    "body/local hmac_key": "HmacKeyXXX444",
    "body/local otp": "OtpYYY555",
    "body/local client_key": "ClientKeyZZZ666",
    "body/local recovery_codes": "RecoveryAAB777",
    "end user IP (X-Forwarded-For)": "198.51.100.23",
}
SECRETS.update(SHAPE_SECRETS)


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


def plant_shape_secrets(url: str) -> None:
    secret = SHAPE_SECRETS
    query = "&".join(
        f"{name}={secret['query ' + name]}"
        for name in ("sig", "code", "X-Amz-Signature", "X-Amz-Credential", "id_token_hint")
    )
    body = {
        "signing_key": secret["body/local signing_key"],
        "hmac_key": secret["body/local hmac_key"],
        "otp": secret["body/local otp"],
        "client_key": secret["body/local client_key"],
        "recovery_codes": [secret["body/local recovery_codes"]],
        # under sensitive names here; the app then puts them where no name is next to them
        "session_token": secret["free text after a sensitive word"],
        "new_password": secret["sql literal"],
        "reset_token": secret["database error detail"],
        "bot_token": secret["bot token in an outgoing URL path"],
        "max_tokens": 4096,
    }
    headers = {
        name: secret["header " + name]
        for name in (
            "Authentication",
            "X-Signature",
            "X-Hub-Signature-256",
            "Stripe-Signature",
            "X-Slack-Signature",
            "X-Access-Key",
            "X-Credentials",
        )
    }
    request = urllib.request.Request(
        f"{url}/api/v1/reset-password/{secret['route parameter']}?{query}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            **headers,
            "X-Forwarded-For": secret["end user IP (X-Forwarded-For)"],
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
        plant_shape_secrets(url)
        handle.force_flush()
        event = sentry_receiver.wait_for(
            "event", lambda e: "exception" in e and "login" in json.dumps(e.get("request"))
        )[0]
        reset = "POST /api/v1/reset-password/{token}"
        integrity = sentry_receiver.wait_for(
            "event", lambda e: "exception" in e and "IntegrityError" in json.dumps(e["exception"])
        )[0]
        for receiver in (sentry_receiver, otlp_receiver):
            receiver.wait_for_spans(lambda s: s.name == "POST /api/v1/login")
            receiver.wait_for_spans(lambda s: s.name == reset)
            receiver.wait_for_spans(lambda s: "SELECT" in s.name and "text" not in s.name)
        found += leaks("metrics", metrics_bytes(url))
        log_output = "\n".join(formatter.format(r) for r in logs.records).encode()
        found += leaks("logs", log_output)
    found += leaks("sentry events and sentry OTLP", sentry_receiver.raw_bytes())
    found += leaks("jaeger OTLP", otlp_receiver.raw_bytes())
    # The request was really carried to the sinks, only without its secrets.
    assert event["request"]["headers"]
    assert b"/api/v1/login" in otlp_receiver.raw_bytes()
    assert any("login failed" in r.getMessage() for r in logs.records)
    # ...and what must survive the scrubbing did: the statement's shape, the route
    # template, the constraint's column, the host of the bot API call.
    jaeger = otlp_receiver.raw_bytes()
    assert b"SELECT ?::text" in jaeger
    assert b"/api/v1/reset-password/{token}" in jaeger
    assert b"Key (reset_token)=([Filtered])" in jaeger
    assert any("invalid token [Filtered]" in formatter.format(r) for r in logs.records)
    assert any("/bot[Filtered]/sendMessage" in formatter.format(r) for r in logs.records)
    # The request's breadcrumbs (scrubbed with the event, not when added) were sent.
    crumbs = json.dumps(integrity["breadcrumbs"])
    assert "SELECT ?::text" in crumbs
    assert "password reset asked for [Filtered]" in crumbs
    assert "/bot[Filtered]/sendMessage" in crumbs

    project = bugsink.create_project()
    with running_service(settings(otlp_receiver, project.dsn, "off"), postgres_url, redis_url) as (
        url,
        handle,
        _,
    ):
        plant_secrets(url)
        plant_shape_secrets(url)
        handle.force_flush()
        stored = [
            bugsink.wait_for_event(project, lambda e, m=marker: m in json.dumps(e.data), timeout=20)
            for marker in ("login", "IntegrityError")
        ]
    for one in stored:
        stored_json: Any = one.data
        found += leaks("bugsink stored event", json.dumps(stored_json).encode())
    assert "SELECT ?::text" in json.dumps(stored[1].data.get("breadcrumbs"))
    assert not found, f"secrets leaked: {found}"


def test_log_records_keep_trace_ids_while_scrubbed(caplog: Any) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("abc123zz",), None)
    formatted = JsonFormatter("svc", "staging").format(record)
    assert "abc123zz" not in formatted
