"""The real Debian Alertmanager (``/usr/bin/prometheus-alertmanager``) on 127.0.0.1.

Clustering is disabled (``--cluster.listen-address=`` empty): a single test instance must not
gossip on 0.0.0.0:9094 nor wait for peers before it is ready.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.local_server import LocalServer
from tests.support.net import LOOPBACK, get_json, poll_until
from tests.support.processes import require_binary

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


class Alertmanager(LocalServer):
    name = "Alertmanager"

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
        super().__init__(startup_timeout)

    def _config_text(self) -> str:
        if isinstance(self.config, Path):
            return self.config.read_text()
        if isinstance(self.config, str):
            return self.config
        return json.dumps(dict(self.config), indent=2)

    def start(self) -> None:
        work_dir = self._prepare()
        config_path = work_dir / "alertmanager.yml"
        config_path.write_text(self._config_text())
        self._launch(
            [
                self.binary,
                f"--config.file={config_path}",
                f"--storage.path={work_dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ]
        )

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
