"""Every PromQL expression of every recording rule, alert rule and dashboard panel is
evaluated by a real Prometheus that scraped an instrumented service under load (DB, Redis,
outgoing HTTP, errors, a failing telemetry sink) and returns data, not merely parses."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.failing_sockets import refused_port
from tests.support.net import BackgroundHTTPServer
from tests.support.prometheus import Prometheus

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
# An alert's signal is its expression without the final threshold comparison: the
# threshold is what the promtool unit tests exercise; here the signal must have data.
THRESHOLD = re.compile(r"^(?P<signal>.*?)\s*(?:>|<|>=|<=|==|!=)\s*-?[0-9.]+\s*$", re.DOTALL)


def grafana_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", ROOT / "grafana/generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def rules() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def alert_signal(expr: str) -> str:
    expr = expr.strip()
    match = THRESHOLD.match(expr)
    signal = match.group("signal") if match else expr
    # "up == 0" inside the expression: evaluate the series before the comparison.
    return re.sub(r"(\bup(?:\{[^}]*\})?)\s*==\s*0", r"\1", signal)


class _FlakyHandler(BaseHTTPRequestHandler):
    """A Sentry stand-in answering every other request with a 500: events and spans are
    both sent and lost, so the "sent" and the "dropped" series both have data."""

    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).count += 1
        self.send_response(200 if self.count % 2 else 500)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return None


def drive_load(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        call("GET", f"{url}/api/v1/items/{i}")
        call("GET", f"{url}/api/v1/call")
        call("GET", f"{url}/api/v1/call?path=unavailable")
        if i % 3 == 0:
            call("GET", f"{url}/api/v1/crash")
        if i % 5 == 0:
            call("POST", f"{url}/api/v1/handled")
        call("POST", f"{url}/api/v1/agents/plan?step={i}")
        time.sleep(0.05)


def test_every_rule_and_panel_expression_returns_data(
    prometheus_factory: Any, postgres_url: str, redis_url: str
) -> None:
    with refused_port() as down, BackgroundHTTPServer(_FlakyHandler) as flaky:
        settings = TelemetrySettings(
            environment="staging",
            service_name="api",
            service_version="2.0.0",
            otlp_endpoint=down.url,  # Jaeger down: failed spans
            sentry_dsn=f"http://publickey@127.0.0.1:{flaky.port}/1",  # sent and lost
            span_queue_size=4,  # and dropped spans
            export_timeout_seconds=1.0,
        )
        with running_service(settings, postgres_url, redis_url) as (url, _, _):
            prometheus: Prometheus = prometheus_factory(
                targets=[url.removeprefix("http://")], job_name="api", rule_files=RULE_FILES
            )
            prometheus.wait_for_targets_up(timeout=30)
            drive_load(url, 25)
            time.sleep(3)  # the last scrape and a rule evaluation after it

            empty: list[str] = []
            for rule in rules():
                if "record" in rule:
                    name, expr = f"recording rule {rule['record']}", rule["record"]
                else:
                    name, expr = f"alert {rule['alert']}", alert_signal(rule["expr"])
                if not prometheus.query(expr):
                    empty.append(f"{name}: {expr}")
            for panel in grafana_generator().promql_expressions():
                if not prometheus.query(panel.expr):
                    empty.append(f"{panel.dashboard_uid} / {panel.panel_title}: {panel.expr}")
    assert not empty, "expressions with no data:\n" + "\n".join(empty)
