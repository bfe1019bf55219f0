"""The real Debian Prometheus (``/usr/bin/prometheus``), started per test with a generated config.

Exemplar storage is on (``--enable-feature=exemplar-storage``): exemplars are scraped only in
the OpenMetrics exposition, which Prometheus asks for first. ``scrape_protocols`` (the explicit
way to prefer OpenMetrics) exists only from Prometheus 2.49; Debian bookworm ships 2.42, whose
default Accept header already puts OpenMetrics first, so the key is written only when the
installed binary understands it (an unknown key makes Prometheus refuse the config).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.local_server import LocalServer
from tests.support.net import LOOPBACK, get_json, poll_until
from tests.support.processes import require_binary

PROMETHEUS_BINARY = "prometheus"
PROMETHEUS_APT_PACKAGE = "prometheus"
OPENMETRICS_FIRST = ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText0.0.4"]


@functools.cache
def prometheus_version(binary: str) -> tuple[int, int, int]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", output.stdout + output.stderr)
    if match is None:
        raise RuntimeError(f"cannot read the version of {binary}: {output.stdout!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _alertmanager_config(alertmanager_url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(alertmanager_url)
    config: dict[str, Any] = {
        "scheme": parts.scheme or "http",
        "static_configs": [{"targets": [parts.netloc]}],
    }
    if parts.path.strip("/"):
        config["path_prefix"] = parts.path
    return {"alertmanagers": [config]}


def build_config(
    targets: Sequence[str],
    scrape_interval: str,
    evaluation_interval: str,
    job_name: str,
    metrics_path: str,
    rule_files: Sequence[Path],
    alertmanager_url: str | None,
    supports_scrape_protocols: bool,
) -> dict[str, Any]:
    """The ``prometheus.yml`` document (JSON is YAML, so it is written as JSON)."""
    scrape_config: dict[str, Any] = {
        "job_name": job_name,
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "metrics_path": metrics_path,
        "static_configs": [{"targets": list(targets)}],
    }
    if supports_scrape_protocols:
        scrape_config["scrape_protocols"] = OPENMETRICS_FIRST
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [scrape_config] if targets else [],
        "rule_files": [str(path) for path in rule_files],
    }
    if alertmanager_url:
        config["alerting"] = _alertmanager_config(alertmanager_url)
    return config


class Prometheus(LocalServer):
    name = "Prometheus"

    """``with Prometheus(["127.0.0.1:8000"]) as prom: prom.wait_for_query("up", bool)``."""

    def __init__(
        self,
        targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        job_name: str = "telemetry",
        metrics_path: str = "/metrics",
        rule_files: Sequence[Path | str] = (),
        alertmanager_url: str | None = None,
        alert_resend_delay: str = "1s",
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = require_binary(PROMETHEUS_BINARY, PROMETHEUS_APT_PACKAGE)
        self.scrape_targets = list(targets)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.job_name = job_name
        self.metrics_path = metrics_path
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.alertmanager_url = alertmanager_url
        self.alert_resend_delay = alert_resend_delay
        super().__init__(startup_timeout)

    @property
    def config_path(self) -> Path:
        if self.work_dir is None:
            raise RuntimeError("Prometheus is not started")
        return self.work_dir / "prometheus.yml"

    def start(self) -> None:
        work_dir = self._prepare()
        config = build_config(
            self.scrape_targets,
            self.scrape_interval,
            self.evaluation_interval,
            self.job_name,
            self.metrics_path,
            self.rule_files,
            self.alertmanager_url,
            supports_scrape_protocols=prometheus_version(self.binary) >= (2, 49, 0),
        )
        self.config_path.write_text(json.dumps(config, indent=2))
        self._launch(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--enable-feature=exemplar-storage",
                # Alerts that fire before Alertmanager discovery settles (it batches updates
                # every 5 s) are dropped; the default 1 m resend delay would stall the test.
                f"--rules.alert.resend-delay={self.alert_resend_delay}",
                "--log.level=warn",
            ]
        )

    def _api(self, endpoint: str, params: dict[str, str | float] | None = None) -> Any:
        answer = get_json(f"{self.url}/api/v1/{endpoint}", params)
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus /api/v1/{endpoint} failed: {answer}")
        return answer["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (vector samples: ``metric`` and ``value``)."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        result: list[dict[str, Any]] = self._api("query", params)["result"]
        return result

    def query_range(
        self, promql: str, start: float, end: float, step: str = "1s"
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api(
            "query_range", {"query": promql, "start": start, "end": end, "step": step}
        )["result"]
        return result

    def query_exemplars(
        self, promql: str, start: float | None = None, end: float | None = None
    ) -> list[dict[str, Any]]:
        """``[{"seriesLabels": {...}, "exemplars": [{"labels": {"trace_id": ...}, ...}]}]``."""
        now = time.time()
        data: list[dict[str, Any]] = self._api(
            "query_exemplars",
            {
                "query": promql,
                "start": start if start is not None else now - 3600,
                "end": end if end is not None else now + 60,
            },
        )
        return data

    def exemplar_labels(self, promql: str) -> list[dict[str, str]]:
        """The label sets of every exemplar stored for the series ``promql`` selects."""
        return [
            exemplar["labels"]
            for series in self.query_exemplars(promql)
            for exemplar in series.get("exemplars", [])
        ]

    def wait_for_query(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Re-run the instant query until ``predicate(result)`` holds; return that result."""

        def satisfied() -> list[dict[str, Any]] | None:
            result = self.query(promql)
            return result if predicate(result) else None

        return poll_until(satisfied, timeout, interval=0.25, describe=f"PromQL {promql!r}")

    def wait_for_exemplars(
        self,
        promql: str,
        predicate: Callable[[dict[str, str]], bool] = lambda labels: True,
        timeout: float = 15.0,
    ) -> list[dict[str, str]]:
        """Exemplar label sets for ``promql`` once at least one matches ``predicate``."""

        def matching() -> list[dict[str, str]] | None:
            found = [labels for labels in self.exemplar_labels(promql) if predicate(labels)]
            return found or None

        return poll_until(matching, timeout, interval=0.25, describe=f"exemplars of {promql!r}")

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets, each with ``health``, ``lastError`` and ``scrapeUrl``."""
        active: list[dict[str, Any]] = self._api("targets", {"state": "active"})["activeTargets"]
        return active

    def wait_for_targets_up(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        def all_up() -> list[dict[str, Any]] | None:
            active = self.targets()
            healthy = bool(active) and all(target["health"] == "up" for target in active)
            return active if healthy else None

        return poll_until(all_up, timeout, interval=0.25, describe="all scrape targets up")

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._api("rules")["groups"]
        return groups

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts Prometheus evaluates as pending or firing."""
        alerts: list[dict[str, Any]] = self._api("alerts")["alerts"]
        return alerts
