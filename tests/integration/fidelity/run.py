"""Run the fidelity app under the four configurations and collect what the sinks received.

Each configuration gets its own process, its own OTLP receiver (the Jaeger side), its own
Sentry-protocol receiver (envelopes, and Sentry's OTLP endpoint derived from the DSN) and its
own downstream HTTP server; the four run concurrently. The same requests go to each; then
the process is stopped with SIGTERM and, once it has exited (it flushes first), what the
receivers hold is everything it sent.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.integration.fidelity.app import (
    BRIDGE_OTLP,
    CONFIGS,
    ENVIRONMENT,
    OTEL,
    SENTRY,
    SERVICE,
    USER_ID,
    VERSION,
)
from tests.support.net import LOOPBACK, BackgroundHTTPServer, free_port
from tests.support.otlp_receiver import (
    OTLPReceiver,
    ReceivedSpan,
    lowercase_headers,
    read_request_body,
    send_response_bytes,
)
from tests.support.processes import ManagedProcess
from tests.support.sentry_receiver import ReceivedEnvelope, SentryReceiver

REPO = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 60.0

# Secrets the scenario sends; the comparison checks they arrive only as [Filtered].
AUTHORIZATION = "Bearer fidelity-bearer-7c1f"
PASSWORD = "hunter2-fidelity"
FORM_SECRET = "s3cr3t-fidelity"
SECRETS = (PASSWORD, FORM_SECRET, AUTHORIZATION.split()[-1])


@dataclass(frozen=True)
class Call:
    """One request of the scenario; ``key`` names it in the comparison."""

    key: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


USER_HEADERS = {
    "X-User-Id": USER_ID,
    "Authorization": AUTHORIZATION,
    "X-Request-Source": "fidelity-suite",
}

SCENARIO = (
    Call("items", "GET", "/items/42?q=books", USER_HEADERS),
    Call(
        "checkout",
        "POST",
        "/checkout?coupon=SPRING",
        {**USER_HEADERS, "Content-Type": "application/json"},
        json.dumps({"item_id": 43, "card_holder": "Ada", "password": PASSWORD}).encode(),
    ),
    Call(
        "profile",
        "POST",
        "/profile?source=settings",
        {**USER_HEADERS, "Content-Type": "application/x-www-form-urlencoded"},
        f"display_name=Ada&secret={FORM_SECRET}".encode(),
    ),
    Call("tasks", "POST", "/tasks", USER_HEADERS),
    # No user: nothing of the requests before may show up on this one.
    Call("anonymous", "GET", "/items/7", {"X-Request-Source": "fidelity-suite"}),
)

EXPECTED_STATUS = {"items": 200, "checkout": 200, "profile": 500, "tasks": 202, "anonymous": 200}


class _PriceHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced."""

    def do_GET(self) -> None:
        owner: PriceServer = self.server.owner  # type: ignore[attr-defined]
        read_request_body(self)
        owner.record(self.path, lowercase_headers(self))
        send_response_bytes(self, 200, b'{"price": 9.5}', "application/json")


class PriceServer(BackgroundHTTPServer):
    """The downstream service of the outgoing HTTPX call; keeps the headers it got."""

    def __init__(self) -> None:
        super().__init__(_PriceHandler)
        self._lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []

    def record(self, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((path, headers))


@dataclass
class Observation:
    """Everything one configuration's sinks received."""

    config: str
    jaeger_spans: list[ReceivedSpan]
    sentry_otlp_spans: list[ReceivedSpan]
    envelopes: list[ReceivedEnvelope]
    downstream: list[tuple[str, dict[str, str]]]
    statuses: dict[str, int]
    log: str

    def items(self, kind: str) -> list[Any]:
        return [
            item.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == kind and item.json is not None
        ]


def _clean_environment() -> dict[str, str]:
    """The test process's environment without anything that configures an SDK."""
    prefixes = ("OTEL_", "SENTRY_", "TELEMETRY_")
    names = {"ENVIRONMENT", "SERVICE_VERSION", "PROMETHEUS_MULTIPROC_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in names}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def environment_for(config: str, otlp: OTLPReceiver, sentry: SentryReceiver) -> dict[str, str]:
    env = _clean_environment()
    if config == OTEL:
        env.update(
            OTEL_SERVICE_NAME=SERVICE,
            OTEL_RESOURCE_ATTRIBUTES=(
                f"service.version={VERSION},deployment.environment={ENVIRONMENT}"
            ),
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
        )
    elif config == SENTRY:
        env.update(SENTRY_DSN=sentry.dsn)
    else:
        env.update(
            ENVIRONMENT=ENVIRONMENT,
            SENTRY_DSN=sentry.dsn,
            OTEL_SERVICE_NAME=SERVICE,
            SERVICE_VERSION=VERSION,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
            TELEMETRY_SENTRY_TRACES="otlp" if config == BRIDGE_OTLP else "envelope",
        )
    return env


def send(base_url: str, call: Call) -> int:
    """One request from a client nothing instruments (urllib), so no config sees a
    trace header the others do not."""
    request = urllib.request.Request(
        base_url + call.path, data=call.body, method=call.method, headers=call.headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status: int = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def run_config(config: str, postgres_url: str, redis_url: str, work_dir: Path) -> Observation:
    """Start the app under ``config``, play the scenario, stop it, return what arrived."""
    if (REPO / ".env").exists():
        # The bridge's settings read .env from the working directory (the project root).
        raise RuntimeError(f"{REPO / '.env'} would configure the bridge: move it away")
    with OTLPReceiver() as otlp, SentryReceiver() as sentry, PriceServer() as downstream:
        port = free_port()
        argv = [sys.executable, "-m", "tests.integration.fidelity.app", config]
        argv += ["--port", str(port), "--downstream", downstream.url]
        argv += ["--postgres", postgres_url, "--redis", redis_url]
        process = ManagedProcess(
            argv,
            log_path=work_dir / f"{config}.log",
            # The project root, as a service runs: sentry-sdk marks frames under it in_app.
            cwd=REPO,
            env=environment_for(config, otlp, sentry),
        )
        try:
            process.wait_until_ready(lambda: _port_open(port), STARTUP_TIMEOUT_S, config)
            statuses = {call.key: send(f"http://{LOOPBACK}:{port}", call) for call in SCENARIO}
        finally:
            process.stop(grace_seconds=30)
        log = process.log_tail(max_chars=200_000)
        if "fidelity: flushed and stopped" not in log:
            raise RuntimeError(f"{config} did not stop cleanly; log {process.log_path}:\n{log}")
        unexpected = {k: v for k, v in statuses.items() if v != EXPECTED_STATUS[k]}
        if unexpected:
            raise RuntimeError(f"{config}: unexpected statuses {unexpected}:\n{log[-4000:]}")
        return Observation(
            config=config,
            jaeger_spans=otlp.spans(),
            sentry_otlp_spans=sentry.otlp_spans(),
            envelopes=sentry.envelopes(),
            downstream=list(downstream.requests),
            statuses=statuses,
            log=log,
        )


def collect(postgres_url: str, redis_url: str, work_dir: Path) -> dict[str, Observation]:
    """All four configurations, concurrently; a failure of one is raised after all ended."""
    results: dict[str, Observation] = {}
    errors: dict[str, BaseException] = {}

    def worker(config: str) -> None:
        try:
            results[config] = run_config(config, postgres_url, redis_url, work_dir)
        except BaseException as error:  # reported below, with the config's name
            errors[config] = error

    threads = [threading.Thread(target=worker, args=(c,), name=f"fidelity-{c}") for c in CONFIGS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        config, error = next(iter(errors.items()))
        raise RuntimeError(f"configuration {config!r} failed: {error}") from error
    return {config: results[config] for config in CONFIGS}


Collector = Callable[[str, str, Path], dict[str, Observation]]
