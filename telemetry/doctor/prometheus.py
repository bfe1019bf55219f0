"""The Prometheus check of ``telemetry doctor``: Prometheus is ready, scrapes this service
and stores exemplars (without which Grafana cannot jump from a latency panel to a trace).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from telemetry.doctor.checks import CheckResult, Status, http_request

__all__ = ["check_prometheus"]


def _prometheus_api(base: str, path: str, timeout: float, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    answer = http_request(f"{base}/api/v1/{path}{query}", timeout=timeout)
    if not answer.ok:
        raise RuntimeError(answer.problem or f"HTTP {answer.status}")
    document = answer.json()
    if document.get("status") != "success":
        raise RuntimeError(str(document.get("error", document)))
    return document["data"]


def _instant(base: str, promql: str, timeout: float) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _prometheus_api(base, "query", timeout, query=promql)["result"]
    return result


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))


def _scrape_result(base: str, service: str, job: str | None, timeout: float) -> CheckResult:
    fix_add = (
        "add a scrape job for the service's metrics endpoint to prometheus.yml, or name the "
        "job with --prometheus-job"
    )
    if job is not None:
        series = _instant(base, f'up{{job="{job}"}}', timeout)
    else:
        # The service's own build-info series says which job/instance scrapes it.
        found = _instant(base, f'service_build_info{{service="{service}"}}', timeout)
        keys = [{k: m["metric"][k] for k in ("job", "instance") if k in m["metric"]} for m in found]
        series = [
            sample
            for labels in keys
            for sample in _instant(base, f"up{{{_selector(labels)}}}", timeout)
        ]
    if not series:
        wanted = f"job={job}" if job else f'service_build_info{{service="{service}"}}'
        return CheckResult(
            "prometheus.scrape", Status.FAIL, f"no scraped series for {wanted}", fix_add
        )
    down = [s["metric"] for s in series if s["value"][1] != "1"]
    where = ", ".join(f"{s['metric'].get('job')}/{s['metric'].get('instance')}" for s in series)
    if not down:
        return CheckResult("prometheus.scrape", Status.PASS, f"scraped and up: {where}")
    targets = _prometheus_api(base, "targets", timeout, state="active")["activeTargets"]
    errors = [
        f"{t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}"
        for t in targets
        if any(t.get("labels", {}).get("instance") == d.get("instance") for d in down)
    ]
    return CheckResult(
        "prometheus.scrape",
        Status.FAIL,
        f"target down: {'; '.join(errors) or where}",
        "make the service's metrics endpoint reachable from Prometheus (host, port, "
        "metrics path, TELEMETRY_METRICS=true)",
    )


def check_prometheus(
    base_url: str, service: str, job: str | None, timeout: float
) -> list[CheckResult]:
    base = base_url.rstrip("/")
    ready = http_request(f"{base}/-/ready", timeout=timeout)
    if not ready.ok:
        return [
            CheckResult(
                "prometheus.ready",
                Status.FAIL,
                f"{base}/-/ready: {ready.problem or f'HTTP {ready.status}'}",
                "check --prometheus-url (scheme, host, port, any --web.route-prefix) and that "
                "Prometheus has finished starting",
            )
        ]
    results = [CheckResult("prometheus.ready", Status.PASS, f"{base} is ready")]
    try:
        results.append(_scrape_result(base, service, job, timeout))
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        results.append(
            CheckResult("prometheus.scrape", Status.WARN, f"could not query Prometheus: {error}")
        )
    try:
        flags = _prometheus_api(base, "status/flags", timeout)
    except (RuntimeError, ValueError) as error:
        results.append(
            CheckResult("prometheus.exemplars", Status.WARN, f"could not read flags: {error}")
        )
        return results
    features = {f.strip() for f in str(flags.get("enable-feature", "")).split(",")}
    if "exemplar-storage" in features:
        results.append(CheckResult("prometheus.exemplars", Status.PASS, "exemplar storage is on"))
    else:
        results.append(
            CheckResult(
                "prometheus.exemplars",
                Status.WARN,
                "exemplar storage is off: Grafana cannot jump from a latency panel to the trace",
                "start Prometheus with --enable-feature=exemplar-storage",
            )
        )
    return results
