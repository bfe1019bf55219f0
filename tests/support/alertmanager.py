"""The real Debian Alertmanager (``/usr/bin/prometheus-alertmanager``) on 127.0.0.1.

Clustering is disabled (``--cluster.listen-address=`` empty): a single test instance must not
gossip on 0.0.0.0:9094 nor wait for peers before it is ready.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.net import LOOPBACK, free_port, get_json, http_ok, poll_until
from tests.support.processes import ManagedProcess, require_binary

ALERTMANAGER_BINARY = "prometheus-alertmanager"
ALERTMANAGER_APT_PACKAGE = "prometheus-alertmanager"

# Routes everything to a receiver that notifies nobody: enough to accept and list alerts.
DEFAULT_CONFIG: dict[str, Any] = {
    "route": {
        "receiver": "blackhole",
        "group_wait": "0s",
        "group_interval": "1s",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": "blackhole"}],
}


class Alertmanager:
    """``with Alertmanager(config) as am: prometheus_alertmanager_url = am.url``.

    ``config`` is a mapping (written out as YAML-compatible JSON), a YAML string, or a path
    to an existing config file (copied, so relative template paths should be absolute).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str | Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = require_binary(ALERTMANAGER_BINARY, ALERTMANAGER_APT_PACKAGE)
        self.config = DEFAULT_CONFIG if config is None else config
        self.startup_timeout = startup_timeout
        self.port = 0
        self.work_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _config_text(self) -> str:
        if isinstance(self.config, Path):
            return self.config.read_text()
        if isinstance(self.config, str):
            return self.config
        return json.dumps(dict(self.config), indent=2)

    def start(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="alertmanager-"))
        self.port = free_port()
        config_path = self.work_dir / "alertmanager.yml"
        config_path.write_text(self._config_text())
        self._process = ManagedProcess(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.path={self.work_dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            log_path=self.work_dir / "alertmanager.log",
            cwd=self.work_dir,
        )
        try:
            self._process.wait_until_ready(
                lambda: http_ok(f"{self.url}/-/ready"), self.startup_timeout, "Alertmanager"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        return "" if self._process is None else self._process.log_tail()

    def status(self) -> dict[str, Any]:
        """``/api/v2/status``: the loaded config (``config.original``), cluster and version."""
        status: dict[str, Any] = get_json(f"{self.url}/api/v2/status")
        return status

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = get_json(f"{self.url}/api/v2/alerts")
        return alerts

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts the way Prometheus does (``labels``, ``annotations``, ``startsAt``...)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):
            return

    def wait_for_alert(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first alert Alertmanager holds that matches ``predicate``."""
        return poll_until(
            lambda: next((alert for alert in self.alerts() if predicate(alert)), None),
            timeout,
            interval=0.25,
            describe="a matching Alertmanager alert",
        )
