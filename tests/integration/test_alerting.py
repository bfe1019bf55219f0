"""The alerting path end to end with real servers: metrics -> Prometheus (the real
recording and alert rules) -> Alertmanager (the real config, routes, inhibition and
templates) -> Slack and PagerDuty, both stood in for by a local HTTP endpoint.

A small prometheus_client server plays the instrumented service: it serves the metric
names of docs/metrics.md and starts answering errors on cue. The alert rules are the
committed ones with `for` removed, so the test waits seconds instead of minutes; their
expressions, labels and annotations are untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tests.support.alertmanager import Alertmanager
from tests.support.net import LOOPBACK, BackgroundHTTPServer, poll_until
from tests.support.prometheus import Prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER_DIR = ROOT / "deploy" / "alertmanager"

SERVICE = "checkout"
RELEASE = "checkout@1.2.3"
GRAFANA_URL = "http://grafana.example.test"
JAEGER_URL = "http://jaeger.example.test"
SENTRY_ISSUES_URL = "http://bugsink.example.test/issues/1/all/?q="
ROUTING_KEY = "test-routing-key-0123456789abcdef"


class _Receiver(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines on stderr would drown pytest's output."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.owner.record(self.path, json.loads(body))  # type: ignore[attr-defined]
        answer = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class NotificationReceiver(BackgroundHTTPServer):
    """Stands in for Slack's webhook (/slack) and PagerDuty's Events API (/pagerduty)."""

    def __init__(self) -> None:
        super().__init__(_Receiver)
        self._lock = threading.Lock()
        self._received: dict[str, list[dict[str, Any]]] = {}

    def record(self, path: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._received.setdefault(path, []).append(payload)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received.get(path, []))


class FakeService:
    """Serves the library's metric names; ``fail()`` makes it answer 5xx from then on."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        build_info = Gauge(
            "service_build_info",
            "Build of the serving process",
            ["service", "version", "environment", "release"],
            registry=self.registry,
        )
        build_info.labels(SERVICE, "1.2.3", "production", RELEASE).set(1)
        self.requests = Counter(
            "http_server_requests",
            "Requests answered",
            ["service", "method", "route", "status_code"],
            registry=self.registry,
        )
        # Both series exist from the first scrape, so the error rate starts at 0 instead of
        # appearing with the first error.
        self.ok = self.requests.labels(SERVICE, "GET", "/items/{item_id}", "200")
        self.errors = self.requests.labels(SERVICE, "GET", "/items/{item_id}", "500")
        self.failing = threading.Event()
        self.stopping = threading.Event()
        self.server, _ = start_http_server(0, addr=LOOPBACK, registry=self.registry)
        self.traffic = threading.Thread(target=self._serve_traffic, daemon=True)
        self.traffic.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.server.server_port}"

    def _serve_traffic(self) -> None:
        while not self.stopping.wait(0.1):
            self.ok.inc(5)
            if self.failing.is_set():
                self.errors.inc(5)  # 3000 errors a minute: far above the 10/min threshold

    def fail(self) -> None:
        self.failing.set()

    def stop(self) -> None:
        self.stopping.set()
        self.traffic.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_service() -> Iterator[FakeService]:
    service = FakeService()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as server:
        yield server


def alertmanager_config(
    receiver: NotificationReceiver,
    secrets: Path,
    config_file: Path = ALERTMANAGER_DIR / "alertmanager.yml",
    routing_key: str = ROUTING_KEY,
) -> str:
    """The committed config (or ``config_file``), pointed at the local receiver: secret
    files written here, PagerDuty's API URL replaced, templates made absolute, grouping
    made fast."""
    config = yaml.safe_load(config_file.read_text())
    secrets.mkdir()
    (secrets / "slack_api_url").write_text(f"{receiver.url}/slack\n")
    (secrets / "pagerduty_routing_key").write_text(f"{routing_key}\n")
    receivers = {entry["name"]: entry for entry in config["receivers"]}
    receivers["slack"]["slack_configs"][0]["api_url_file"] = str(secrets / "slack_api_url")
    pagerduty = receivers["pagerduty"]["pagerduty_configs"][0]
    pagerduty["routing_key_file"] = str(secrets / "pagerduty_routing_key")
    pagerduty["url"] = f"{receiver.url}/pagerduty"
    config["templates"] = [str(ALERTMANAGER_DIR / template) for template in config["templates"]]
    # group_wait stays above zero: the page and its warning twin arrive together, and the
    # inhibition is only decided once both are in.
    config["route"].update({"group_wait": "2s", "group_interval": "1s"})
    return yaml.safe_dump(config)


def fast_alert_rules(directory: Path) -> Path:
    """rules/alerts.yml without `for`: every alert fires on its first true evaluation."""
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path = directory / "alerts-without-for.yml"
    path.write_text(yaml.safe_dump(rules))
    return path


def load_alert_rules(
    prometheus: Prometheus, rule_file: Path, external_labels: dict[str, str]
) -> None:
    """Add the alert rules and the external labels their link annotations read.

    The fixture's Prometheus takes neither external labels nor extra config, so its config
    file is extended and reloaded (SIGHUP). The alert rules arrive in the same reload on
    purpose: Prometheus 2.42 keeps a rule group whose file did not change as it was,
    external labels included, so rules loaded before the labels would never see them.
    """
    config = json.loads(prometheus.config_path.read_text())
    config["global"]["external_labels"] = external_labels
    config["rule_files"].append(str(rule_file))
    prometheus.config_path.write_text(json.dumps(config))
    assert prometheus.pid is not None
    os.kill(prometheus.pid, signal.SIGHUP)
    poll_until(
        lambda: any(group["file"] == str(rule_file) for group in prometheus.rules()),
        timeout=15,
        interval=0.2,
        describe="Prometheus to reload with the alert rules",
    )


def start_pipeline(
    config: str,
    tmp_path: Path,
    fake_service: FakeService,
    prometheus_factory: Callable[..., Prometheus],
    alertmanager_factory: Callable[..., Alertmanager],
) -> Alertmanager:
    """Alertmanager on ``config``, Prometheus scraping the fake service with the real
    rules, both ready, the service still healthy."""
    alertmanager = alertmanager_factory(config)
    prometheus = prometheus_factory(
        targets=[fake_service.address],
        job_name="api",
        rule_files=[RULES_DIR / "recording.yml"],
        alertmanager_url=alertmanager.url,
    )
    load_alert_rules(
        prometheus,
        fast_alert_rules(tmp_path),
        {
            "grafana_url": GRAFANA_URL,
            "jaeger_url": JAEGER_URL,
            "sentry_issues_url": SENTRY_ISSUES_URL,
        },
    )
    # The release join needs service_build_info scraped before the errors count.
    prometheus.wait_for_query("service_release:http_server_requests:rate5m > 0", timeout=20)
    return alertmanager


def test_error_burst_pages_pagerduty_and_slack_with_links(
    tmp_path: Path,
    fake_service: FakeService,
    receiver: NotificationReceiver,
    prometheus_factory: Callable[..., Prometheus],
    alertmanager_factory: Callable[..., Alertmanager],
) -> None:
    started = time.monotonic()
    alertmanager = start_pipeline(
        alertmanager_config(receiver, tmp_path / "secrets"),
        tmp_path, fake_service, prometheus_factory, alertmanager_factory,
    )
    assert receiver.received("/slack") == [] and receiver.received("/pagerduty") == []

    fake_service.fail()
    pages = poll_until(
        lambda: receiver.received("/pagerduty"), timeout=30, describe="a PagerDuty event"
    )
    slack = poll_until(lambda: receiver.received("/slack"), timeout=10, describe="a Slack message")

    # PagerDuty: the page, with routing key from the secret file, service, release, links.
    event = pages[0]
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert "HighErrorRate" in event["payload"]["summary"]
    assert SERVICE in event["payload"]["summary"]
    details = event["payload"]["custom_details"]
    assert details["service"] == SERVICE
    assert details["release"] == RELEASE
    links = {link["text"]: link["href"] for link in event["links"]}
    assert links == {
        "Grafana": f"{GRAFANA_URL}/d/telemetry-service-overview/service-overview"
        f"?var-service={SERVICE}&viewPanel=2",
        "Jaeger": f"{JAEGER_URL}/search?service={SERVICE}&lookback=1h&limit=20"
        "&tags=%7B%22error%22%3A%22true%22%7D",
        "Sentry": f"{SENTRY_ISSUES_URL}release%3A%22checkout%401.2.3%22",
    }

    # Slack: the same incident; its warning twin is inhibited by the page.
    message = slack[0]["attachments"][0]
    assert message["title"].startswith("[FIRING:1] HighErrorRate")
    assert SERVICE in message["title"]
    text = message["text"]
    assert "*page*" in text and "*warning*" not in text
    assert f"{RELEASE}" in text
    for url in links.values():
        assert url in text
    assert {action["text"]: action["url"] for action in message["actions"]} == links
    for payload in slack:
        assert "*warning*" not in payload["attachments"][0]["text"]

    # Both the page and the (inhibited) warning reached Alertmanager.
    held = alertmanager.alerts()
    severities = {
        alert["labels"]["severity"]: alert["status"]["state"]
        for alert in held
        if alert["labels"]["alertname"] == "HighErrorRate"
    }
    assert severities == {"page": "active", "warning": "suppressed"}
    assert time.monotonic() - started < 60


def test_without_a_routing_key_a_page_reaches_slack_and_nothing_goes_to_pagerduty(
    tmp_path: Path,
    fake_service: FakeService,
    receiver: NotificationReceiver,
    prometheus_factory: Callable[..., Prometheus],
    alertmanager_factory: Callable[..., Alertmanager],
) -> None:
    """The compose default: the placeholder key. deploy/alertmanager/entrypoint.sh hands
    Alertmanager its config without the PagerDuty route; the real Alertmanager then sends
    the page to Slack only, although PagerDuty's URL is reachable here."""
    rendered_dir = tmp_path / "rendered"
    subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "entrypoint.sh"),
         f"--config.file={ALERTMANAGER_DIR / 'alertmanager.yml'}"],
        env={
            "PATH": os.environ["PATH"],
            "PAGERDUTY_ROUTING_KEY_FILE": str(
                ALERTMANAGER_DIR / "secrets.example" / "pagerduty_routing_key"
            ),
            "ALERTMANAGER_BINARY": "true",  # render only
            "ALERTMANAGER_RENDERED_CONFIG_DIR": str(rendered_dir),
        },
        capture_output=True, text=True, timeout=30, check=True,
    )
    config = alertmanager_config(
        receiver, tmp_path / "secrets", rendered_dir / "alertmanager.yml", "not-configured"
    )
    alertmanager = start_pipeline(
        config, tmp_path, fake_service, prometheus_factory, alertmanager_factory
    )
    fake_service.fail()
    slack = poll_until(lambda: receiver.received("/slack"), timeout=30, describe="a Slack page")
    assert "*page*" in slack[0]["attachments"][0]["text"]
    # The page is in and was routed (and the warning inhibited) before Slack got it.
    held = {
        alert["labels"]["severity"]: alert["status"]["state"]
        for alert in alertmanager.alerts()
        if alert["labels"]["alertname"] == "HighErrorRate"
    }
    assert held == {"page": "active", "warning": "suppressed"}
    time.sleep(3)  # more than group_wait + group_interval: a PagerDuty post would be in
    assert receiver.received("/pagerduty") == []
