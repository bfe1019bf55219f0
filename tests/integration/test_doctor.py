"""``telemetry doctor`` as a user runs it: the installed console script in a subprocess,
against real receivers, a real Prometheus, a real Bugsink and real failing sockets; and
``run_checks()`` inside processes where the service's wiring (or a wrong one) is live."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.bugsink import Bugsink, BugsinkProject
from tests.support.failing_sockets import blackhole_listener, refused_port
from tests.support.net import BackgroundHTTPServer
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import Prometheus
from tests.support.sentry_receiver import SentryReceiver

TELEMETRY = Path(sys.executable).parent / "telemetry"
SERVICE = "doctor-svc"
# Start-up of the interpreter and its imports, on top of the network timeouts.
STARTUP_BUDGET_S = 12.0


def doctor_env(**variables: str) -> dict[str, str]:
    """The parent environment without any telemetry variable, plus ``variables``."""
    prefixes = ("OTEL_", "TELEMETRY_", "SENTRY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("ENVIRONMENT", None)
    env.pop("SERVICE_VERSION", None)
    env.update(OTEL_SERVICE_NAME=SERVICE, **variables)
    return env


def run_doctor(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> tuple[int, str, float]:
    started = time.monotonic()
    answer = subprocess.run(
        [str(TELEMETRY), "doctor", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return answer.returncode, answer.stdout + answer.stderr, time.monotonic() - started


def line_of(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.split()[1:2] == [name]:
            return line
    raise AssertionError(f"no {name!r} line in:\n{output}")


@pytest.fixture
def clean_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "settings.py").write_text("SENTRY_DSN = os.environ.get('SENTRY_DSN')\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "settings.py"], check=True)
    return repo


class _MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = (
        "# HELP service_build_info Build of the service.\n"
        "# TYPE service_build_info gauge\n"
        f'service_build_info{{service="{SERVICE}",version="1.0",environment="staging",'
        f'release="{SERVICE}@1.0"}} 1\n'
    ).encode()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: scrape lines on stderr would drown pytest's output."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def metrics_server() -> Iterator[BackgroundHTTPServer]:
    with BackgroundHTTPServer(_MetricsHandler) as server:
        yield server


# -- a good configuration --------------------------------------------------------------------


def test_good_configuration_with_send_passes_and_delivers(
    tmp_path: Path,
    clean_repo: Path,
    metrics_server: BackgroundHTTPServer,
    prometheus_factory: Callable[..., Prometheus],
) -> None:
    prometheus = prometheus_factory(targets=[f"127.0.0.1:{metrics_server.port}"], job_name="api")
    prometheus.wait_for_query(f'service_build_info{{service="{SERVICE}"}}')
    with OTLPReceiver() as jaeger, SentryReceiver() as sentry:
        env = doctor_env(
            ENVIRONMENT="staging",
            SENTRY_DSN=sentry.dsn,
            OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.url,
        )
        code, output, _ = run_doctor(
            tmp_path,
            env,
            "--send",
            "--prometheus-url",
            prometheus.url,
            "--repo",
            str(clean_repo),
        )

        assert code == 0, output
        assert not [line for line in output.splitlines() if line.startswith(("FAIL", "WARN"))]
        event_line = line_of(output, "sentry.test-event")
        event_id = re.search(r"event id ([0-9a-f]{32})", event_line)
        assert event_id is not None, event_line
        events = sentry.wait_for("event", lambda e: e.get("event_id") == event_id.group(1))
        assert events[0]["message"] == "telemetry doctor test event"
        assert events[0]["environment"] == "staging"
        span_line = line_of(output, "otlp.jaeger.test-span")
        trace_id = re.search(r"trace id ([0-9a-f]{32})", span_line)
        assert trace_id is not None, span_line
        spans = jaeger.wait_for_spans(lambda s: s.trace_id == trace_id.group(1))
        assert spans[0].name == "telemetry doctor test span"
        assert spans[0].service_name == SERVICE
        assert f"{jaeger.url}/v1/traces" in line_of(output, "settings")
        assert sentry.public_key not in output
    assert "sentry=on" in line_of(output, "settings")
    assert "accepts OTLP" in line_of(output, "otlp.sentry")
    assert f"api/127.0.0.1:{metrics_server.port}" in line_of(output, "prometheus.scrape")
    assert line_of(output, "prometheus.exemplars").startswith("PASS")


def test_json_output_of_the_script(tmp_path: Path, clean_repo: Path) -> None:
    code, output, _ = run_doctor(tmp_path, doctor_env(), "--json", "--repo", str(clean_repo))

    document = json.loads(output)
    assert code == 0
    assert document["ok"] is True
    assert {"name", "status", "detail", "fix"} <= set(document["checks"][0])
    assert [c["status"] for c in document["checks"] if c["name"] == "settings"] == ["PASS"]


def test_prometheus_job_with_its_target_down_fails(
    tmp_path: Path, clean_repo: Path, prometheus_factory: Callable[..., Prometheus]
) -> None:
    with refused_port() as down:
        prometheus = prometheus_factory(targets=[down.address], job_name="api")
        prometheus.wait_for_query('up{job="api"} == 0')

        code, output, _ = run_doctor(
            tmp_path,
            doctor_env(),
            "--prometheus-url",
            prometheus.url,
            "--prometheus-job",
            "api",
            "--repo",
            str(clean_repo),
        )

    scrape = line_of(output, "prometheus.scrape")
    assert code == 1
    assert scrape.startswith("FAIL")
    assert down.address in scrape
    assert "-> fix:" in scrape


# -- broken configurations ----------------------------------------------------------------


def test_unknown_environment_exits_1_naming_the_variable(tmp_path: Path, clean_repo: Path) -> None:
    code, output, _ = run_doctor(
        tmp_path, doctor_env(ENVIRONMENT="prodution"), "--repo", str(clean_repo)
    )

    assert code == 1
    settings = line_of(output, "settings")
    assert settings.startswith("FAIL")
    assert "ENVIRONMENT='prodution'" in settings


@pytest.mark.parametrize("failure", ["refused", "blackhole"])
def test_otlp_endpoint_down_fails_with_the_fix_in_bounded_time(
    tmp_path: Path, clean_repo: Path, failure: str
) -> None:
    opener = refused_port if failure == "refused" else blackhole_listener
    with opener() as endpoint:
        code, output, elapsed = run_doctor(
            tmp_path,
            doctor_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint.url),
            "--send",
            "--timeout",
            "2",
            "--repo",
            str(clean_repo),
        )

    jaeger = line_of(output, "otlp.jaeger")
    assert code == 1
    assert jaeger.startswith("FAIL")
    expected = "connection refused" if failure == "refused" else "no answer within 2s"
    assert expected in jaeger
    assert "-> fix:" in jaeger
    # The probe failed, so no test span is attempted on top of it.
    assert "otlp.jaeger.test-span" not in output
    assert elapsed < 2 + STARTUP_BUDGET_S


def test_bugsink_with_sentry_otlp_traces_warns_about_ingestion(
    tmp_path: Path, clean_repo: Path, bugsink: Bugsink, bugsink_project: BugsinkProject
) -> None:
    env = doctor_env(
        ENVIRONMENT="production",
        SENTRY_DSN=bugsink_project.dsn,
        TELEMETRY_SENTRY_TRACES="otlp",
    )

    code, output, _ = run_doctor(tmp_path, env, "--send", "--repo", str(clean_repo))

    sentry_otlp = line_of(output, "otlp.sentry")
    assert code == 0, output
    assert sentry_otlp.startswith("WARN")
    assert "no OTLP ingestion" in sentry_otlp
    assert "TELEMETRY_SENTRY_TRACES=envelope" in sentry_otlp
    event_id = re.search(r"event id ([0-9a-f]{32})", line_of(output, "sentry.test-event"))
    assert event_id is not None
    stored = bugsink.wait_for_event_id(bugsink_project, event_id.group(1))
    assert stored.data.get("message") or stored.data.get("logentry")


def test_sentry_server_refusing_the_project_fails(tmp_path: Path, clean_repo: Path) -> None:
    with SentryReceiver() as sentry:
        # A path prefix the server does not serve: every envelope is answered 404.
        dsn = sentry.dsn.replace(f":{sentry.port}/", f":{sentry.port}/wrong/")
        env = doctor_env(ENVIRONMENT="staging", SENTRY_DSN=dsn, TELEMETRY_SENTRY_TRACES="off")

        code, output, _ = run_doctor(tmp_path, env, "--send", "--repo", str(clean_repo))

    event = line_of(output, "sentry.test-event")
    assert code == 1
    assert event.startswith("FAIL")
    assert "HTTP 404" in event
    assert "project id" in event


# -- run_checks() inside a live process -------------------------------------------------------


def run_in_process(script: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Run ``script`` then ``run_checks()`` in a fresh interpreter; results by check name."""
    program = textwrap.dedent(script) + textwrap.dedent(
        """
        import json
        from telemetry.doctor import run_checks
        print(json.dumps([r.as_dict() for r in run_checks(timeout=1)]))
        """
    )
    answer = subprocess.run(
        [sys.executable, "-c", program],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    last = answer.stdout.strip().splitlines()[-1]
    return {check["name"]: check for check in json.loads(last)}


def test_in_process_after_setup_telemetry_the_wiring_passes() -> None:
    with SentryReceiver() as sentry:
        env = doctor_env(
            ENVIRONMENT="staging", SENTRY_DSN=sentry.dsn, TELEMETRY_SENTRY_TRACES="envelope"
        )
        checks = run_in_process(
            """
            from fastapi import FastAPI
            from telemetry import setup_telemetry
            setup_telemetry(FastAPI())
            """,
            env,
        )

    assert checks["runtime.propagator"]["status"] == "PASS"
    assert "traceparent" in checks["runtime.propagator"]["detail"]
    assert "sentry-trace" in checks["runtime.propagator"]["detail"]
    assert checks["runtime.sentry-tracing"]["status"] == "PASS"
    assert "runtime.sentry-web-integration" not in checks


def test_in_process_sentry_tracing_without_the_bridge_warns() -> None:
    with SentryReceiver() as sentry:
        checks = run_in_process(
            f"""
            import sentry_sdk
            from sentry_sdk.integrations.fastapi import FastApiIntegration
            from sentry_sdk.integrations.starlette import StarletteIntegration
            # What auto-enabling does when FastAPI is installed, named explicitly: scanning
            # every auto-enabling integration costs seconds of imports.
            sentry_sdk.init(
                dsn={sentry.dsn!r},
                traces_sample_rate=1.0,
                auto_enabling_integrations=False,
                integrations=[StarletteIntegration(), FastApiIntegration()],
            )
            """,
            doctor_env(),
        )

    tracing = checks["runtime.sentry-tracing"]
    assert tracing["status"] == "WARN"
    assert "traces_sample_rate=1.0" in tracing["detail"]
    assert tracing["fix"]
    assert checks["runtime.sentry-web-integration"]["status"] == "WARN"
    assert checks["runtime.propagator"]["status"] == "PASS"


def test_in_process_a_propagator_without_traceparent_warns() -> None:
    checks = run_in_process(
        """
        from opentelemetry.propagate import set_global_textmap
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry import trace
        from sentry_sdk.integrations.opentelemetry.propagator import SentryPropagator
        trace.set_tracer_provider(TracerProvider())
        set_global_textmap(SentryPropagator())
        """,
        doctor_env(),
    )

    propagator = checks["runtime.propagator"]
    assert propagator["status"] == "WARN"
    assert "SentryPropagator" in propagator["detail"]
    assert "setup_propagator=False" in propagator["fix"]
