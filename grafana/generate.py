"""Generate the Grafana dashboards of the telemetry stack.

    python grafana/generate.py            # rewrite grafana/dashboards/*.json
    python grafana/generate.py --check    # exit 1 if a committed file is out of date

The JSON files are committed (Grafana provisions them from disk); this module is their
source. Plain dictionaries, no SDK: the dashboards use a handful of panel types and the
generator must run wherever the tests run.

Every panel query is also available as data, for tests: ``promql_expressions()`` returns
each expression with the dashboard variables replaced by values that select everything,
ready for ``promtool`` or a real Prometheus.

Metric names and labels: docs/metrics.md. Recording rules (``service:...``,
``service_route:...``, ``service_release:...``): deploy/prometheus/rules/recording.yml.
Panel ids are stable on purpose: alert annotations in deploy/prometheus/rules/alerts.yml
link to ``viewPanel=<id>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
JAEGER = {"type": "jaeger", "uid": "jaeger"}

# Requests that are not user traffic (scrapes, probes); the recording rules leave them out
# too, so raw-query panels and rule-based panels agree.
NOT_TRAFFIC = 'route!~"/metrics|/health/.*"'

# Local defaults of the link variables: the ports docker-compose.yml publishes, and the
# first project bugsink-bootstrap creates. In the compose stack grafana/entrypoint.sh
# replaces them with JAEGER_PUBLIC_URL and SENTRY_ISSUES_URL when Grafana starts (Grafana
# itself reads no environment in dashboard JSON); elsewhere set them in the dashboard or
# the URL (?var-jaeger_url=...). Each default must appear in a dashboard only as its
# variable's value: the entrypoint replaces the quoted string wherever it occurs.
DEFAULT_JAEGER_URL = "http://127.0.0.1:16686"
DEFAULT_SENTRY_ISSUES_URL = "http://127.0.0.1:8080/issues/1/all/?q="

# What the dashboard variables become in promql_expressions(): select everything.
ALL_VALUES = {
    "service": ".*",
    "route": ".*",
    "release": ".*",
    "__rate_interval": "5m",
}


# --------------------------------------------------------------------------- links


def sentry_link(title: str, query: str) -> dict[str, Any]:
    """A data link to the Sentry / Bugsink issue search; ``query`` is percent-encoded."""
    return {
        "title": title,
        "url": "${sentry_issues_url:raw}" + query,
        "targetBlank": True,
    }


def jaeger_link(title: str, extra: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "url": "${jaeger_url:raw}/search?service=${__field.labels.service:percentencode}"
        "&lookback=1h&limit=20" + extra,
        "targetBlank": True,
    }


RELEASE_LINKS = [
    sentry_link(
        "Sentry issues of release ${__field.labels.release}",
        "release%3A%22${__field.labels.release:percentencode}%22",
    ),
    jaeger_link("Jaeger traces of ${__field.labels.service}"),
]

ROUTE_LINKS = [
    # Error events carry the route template as their transaction (telemetry/sentry/asgi.py).
    sentry_link(
        "Sentry issues of ${__field.labels.route}",
        "transaction%3A%22${__field.labels.route:percentencode}%22",
    ),
    jaeger_link(
        "Jaeger traces of ${__field.labels.route}",
        "&tags=%7B%22http.route%22%3A%22${__field.labels.route:percentencode}%22%7D",
    ),
]

SERVICE_LINKS = [jaeger_link("Jaeger traces of ${__field.labels.service}")]


# --------------------------------------------------------------------------- panels


def target(expr: str, legend: str, ref_id: str = "A", exemplar: bool = False,
           instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": PROMETHEUS,
        "refId": ref_id,
        "expr": expr,
        "legendFormat": legend,
        "exemplar": exemplar,
        "range": not instant,
        "instant": instant,
        **({"format": "table"} if instant else {}),
    }


def grid(x: int, y: int, w: int = 12, h: int = 8) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"value": value, "color": color} for value, color in steps],
    }


def timeseries(
    panel_id: int,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    pos: dict[str, int],
    links: list[dict[str, Any]] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    threshold_steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": unit,
        "links": links or [],
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"},
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if threshold_steps is not None:
        defaults["thresholds"] = threshold_steps
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    panel_id: int,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    pos: dict[str, int],
    threshold_steps: dict[str, Any],
    decimals: int | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": threshold_steps, "links": SERVICE_LINKS}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "id": panel_id,
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "value_and_name",
        },
    }


def table(
    panel_id: int,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    pos: dict[str, int],
    links: list[dict[str, Any]],
    units: dict[str, str],
) -> dict[str, Any]:
    """Instant queries joined on their labels: one row per label set, one column per query."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": f"Value #{ref_id}"},
            "properties": [
                {"id": "displayName", "value": name},
                {"id": "unit", "value": unit},
            ],
        }
        for ref_id, (name, unit) in zip(
            (t["refId"] for t in targets), units.items(), strict=True
        )
    ]
    return {
        "id": panel_id,
        "type": "table",
        "title": title,
        "description": description,
        "datasource": PROMETHEUS,
        "gridPos": pos,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ],
        "fieldConfig": {"defaults": {"links": links}, "overrides": overrides},
        "options": {"showHeader": True},
    }


def row(panel_id: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": grid(0, y, 24, 1),
        "panels": [],
    }


# --------------------------------------------------------------------------- variables


def query_variable(name: str, label: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time range change: new releases appear without a reload
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
    }


def textbox_variable(name: str, label: str, default: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "textbox",
        "description": description,
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
    }


SERVICE_VAR = query_variable("service", "Service", "label_values(service_build_info, service)")
ROUTE_VAR = query_variable(
    "route", "Route", 'label_values(http_server_requests_total{service=~"$service"}, route)'
)
RELEASE_VAR = query_variable(
    "release", "Release", 'label_values(service_build_info{service=~"$service"}, release)'
)
LINK_VARS = [
    textbox_variable(
        "jaeger_url", "Jaeger URL", DEFAULT_JAEGER_URL,
        "Base URL of the Jaeger UI, for the trace links of the panels.",
    ),
    textbox_variable(
        "sentry_issues_url", "Sentry issue search URL", DEFAULT_SENTRY_ISSUES_URL,
        "Issue search URL up to its query parameter, the search terms are appended. "
        "Bugsink: http://host/issues/<project id>/all/?q=  "
        "Sentry: https://<org>.sentry.io/issues/?project=<id>&query=",
    ),
]


def dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]],
    variables: list[dict[str, Any]], tags: Iterable[str] = (),
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["telemetry", *tags],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,  # shared crosshair: line up latency, errors and traffic
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [
            {
                "title": "Telemetry dashboards",
                "type": "dashboards",
                "tags": ["telemetry"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": panels,
    }


# --------------------------------------------------------------------------- dashboards


def _quantiles(selector: str, by: str, legend_prefix: str) -> list[dict[str, Any]]:
    return [
        target(
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate(http_server_request_duration_seconds_bucket{{{selector}}}[$__rate_interval])))",
            f"{legend_prefix} p{int(float(q) * 100)}",
            ref_id=ref,
            exemplar=True,
        )
        for ref, q in (("A", "0.50"), ("B", "0.95"), ("C", "0.99"))
    ]


def service_overview() -> dict[str, Any]:
    svc = f'service=~"$service", {NOT_TRAFFIC}'
    svc_route = f'service=~"$service", route=~"$route", {NOT_TRAFFIC}'
    apdex_steps = thresholds((None, "red"), (0.5, "orange"), (0.85, "green"))
    crash_free_steps = thresholds((None, "red"), (0.95, "orange"), (0.99, "green"))
    panels = [
        row(100, "Service", 0),
        timeseries(
            1, "Throughput", "Requests per second (probes and scrapes excluded).",
            [target("sum by (service) "
                    f"(rate(http_server_requests_total{{{svc}}}[$__rate_interval]))",
                    "{{service}}", exemplar=True)],
            "reqps", grid(0, 1, 6), links=SERVICE_LINKS,
        ),
        timeseries(
            2, "Error rate", "5xx responses per minute; HighErrorRate alerts above 10.",
            [target(f"60 * sum by (service) (rate(http_server_requests_total{{{svc}, "
                    f'status_code=~"5.."}}[$__rate_interval]))', "{{service}}", exemplar=True)],
            "short", grid(6, 1, 6), links=SERVICE_LINKS, minimum=0,
            threshold_steps=thresholds((None, "green"), (10, "red")),
        ),
        stat(
            3, "Crash-free rate", "Share of requests answered without a 5xx, last 5 minutes.",
            [target('service:http_server_crash_free:ratio_rate5m{service=~"$service"}',
                    "{{service}}")],
            "percentunit", grid(12, 1, 6), crash_free_steps, decimals=2,
        ),
        stat(
            4, "Apdex", "Apdex with T = 0.5 s (tolerating up to 2 s), last 5 minutes; "
            "LowApdex warns below 0.85 and pages below 0.5.",
            [target('service:http_server_apdex:ratio_rate5m{service=~"$service"}', "{{service}}")],
            "none", grid(18, 1, 6), apdex_steps, decimals=2,
        ),
        timeseries(
            5, "Latency p50 / p95 / p99",
            "Request duration quantiles. Exemplar dots open the request's trace in Jaeger "
            "or its Sentry issues. HighLatencyP95 warns above 2 s and pages above 5 s.",
            _quantiles(svc, "service", "{{service}}"),
            "s", grid(0, 9, 24), links=SERVICE_LINKS,
            threshold_steps=thresholds((None, "green"), (2, "orange"), (5, "red")),
        ),
        row(101, "By route", 17),
        timeseries(
            6, "Throughput by route", "Requests per second per route template.",
            [target(f"sum by (service, route) (rate(http_server_requests_total{{{svc_route}}}"
                    "[$__rate_interval]))", "{{service}} {{route}}", exemplar=True)],
            "reqps", grid(0, 18), links=ROUTE_LINKS,
        ),
        timeseries(
            7, "Errors by route", "5xx responses per minute per route template.",
            [target(f"60 * sum by (service, route) (rate(http_server_requests_total{{{svc_route}, "
                    f'status_code=~"5.."}}[$__rate_interval]))', "{{service}} {{route}}",
                    exemplar=True)],
            "short", grid(12, 18), links=ROUTE_LINKS, minimum=0,
        ),
        timeseries(
            8, "p95 latency by route", "95th percentile request duration per route template.",
            [target("histogram_quantile(0.95, sum by (service, route, le) "
                    f"(rate(http_server_request_duration_seconds_bucket{{{svc_route}}}"
                    "[$__rate_interval])))", "{{service}} {{route}}", exemplar=True)],
            "s", grid(0, 26), links=ROUTE_LINKS,
        ),
        timeseries(
            9, "Apdex by route", "Apdex (T = 0.5 s) per route template, last 5 minutes.",
            [target('service_route:http_server_apdex:ratio_rate5m{service=~"$service", '
                    'route=~"$route"}', "{{service}} {{route}}")],
            "none", grid(12, 26), links=ROUTE_LINKS, minimum=0, maximum=1,
            threshold_steps=apdex_steps,
        ),
        row(102, "By release", 34),
        timeseries(
            10, "Throughput by release", "Requests per second per release (service@version).",
            [target('service_release:http_server_requests:rate5m{service=~"$service"}',
                    "{{release}}")],
            "reqps", grid(0, 35, 6), links=RELEASE_LINKS,
        ),
        timeseries(
            11, "Crash-free rate by release", "Share of requests without a 5xx per release.",
            [target('service_release:http_server_crash_free:ratio_rate5m{service=~"$service"}',
                    "{{release}}")],
            "percentunit", grid(6, 35, 6), links=RELEASE_LINKS, maximum=1,
        ),
        timeseries(
            12, "Apdex by release", "Apdex (T = 0.5 s) per release.",
            [target('service_release:http_server_apdex:ratio_rate5m{service=~"$service"}',
                    "{{release}}")],
            "none", grid(12, 35, 6), links=RELEASE_LINKS, minimum=0, maximum=1,
            threshold_steps=apdex_steps,
        ),
        timeseries(
            13, "p95 latency by release", "95th percentile request duration per release.",
            [target('service_release:http_server_request_duration_seconds:p95_rate5m'
                    '{service=~"$service"}', "{{release}}")],
            "s", grid(18, 35, 6), links=RELEASE_LINKS,
        ),
    ]
    return dashboard(
        "telemetry-service-overview", "Service overview",
        "RED metrics, crash-free rate and Apdex of the instrumented services, by service, "
        "route and release. Exemplars link latency and traffic to Jaeger traces and "
        "Sentry issues of the same trace id.",
        panels, [SERVICE_VAR, ROUTE_VAR, *LINK_VARS], tags=["red"],
    )


def release_comparison() -> dict[str, Any]:
    sel = 'service=~"$service", release=~"$release"'
    panels = [
        table(
            1, "Releases side by side",
            "Current figures of every release of the service (last 5 minutes). Click a "
            "release for its Sentry issues or traces.",
            [
                target(f"{expr}{{{sel}}}", "", ref_id, instant=True)
                for ref_id, expr in zip("ABCDEFG", (
                    "service_release:http_server_requests:rate5m",
                    "60 * service_release:http_server_errors:rate5m",
                    "service_release:http_server_crash_free:ratio_rate5m",
                    "service_release:http_server_apdex:ratio_rate5m",
                    "service_release:http_server_request_duration_seconds:p50_rate5m",
                    "service_release:http_server_request_duration_seconds:p95_rate5m",
                    "service_release:http_server_request_duration_seconds:p99_rate5m",
                ), strict=True)
            ],
            grid(0, 0, 24, 7), RELEASE_LINKS,
            {
                "Requests/s": "reqps",
                "Errors/min": "short",
                "Crash-free": "percentunit",
                "Apdex": "none",
                "p50": "s",
                "p95": "s",
                "p99": "s",
            },
        ),
        timeseries(
            2, "Throughput", "Requests per second per release.",
            [target(f"service_release:http_server_requests:rate5m{{{sel}}}", "{{release}}")],
            "reqps", grid(0, 7), links=RELEASE_LINKS,
        ),
        timeseries(
            3, "Errors per minute", "5xx responses per minute per release.",
            [target(f"60 * service_release:http_server_errors:rate5m{{{sel}}}", "{{release}}")],
            "short", grid(12, 7), links=RELEASE_LINKS, minimum=0,
            threshold_steps=thresholds((None, "green"), (10, "red")),
        ),
        timeseries(
            4, "Crash-free rate", "Share of requests without a 5xx per release.",
            [target(f"service_release:http_server_crash_free:ratio_rate5m{{{sel}}}",
                    "{{release}}")],
            "percentunit", grid(0, 15), links=RELEASE_LINKS, maximum=1,
        ),
        timeseries(
            5, "Apdex", "Apdex (T = 0.5 s) per release.",
            [target(f"service_release:http_server_apdex:ratio_rate5m{{{sel}}}", "{{release}}")],
            "none", grid(12, 15), links=RELEASE_LINKS, minimum=0, maximum=1,
            threshold_steps=thresholds((None, "red"), (0.5, "orange"), (0.85, "green")),
        ),
        timeseries(
            6, "Latency p50 / p95 / p99", "Request duration quantiles per release.",
            [
                target(f"service_release:http_server_request_duration_seconds:p{q}_rate5m{{{sel}}}",
                       f"{{{{release}}}} p{q}", ref)
                for ref, q in (("A", "50"), ("B", "95"), ("C", "99"))
            ],
            "s", grid(0, 23, 24), links=RELEASE_LINKS,
        ),
    ]
    return dashboard(
        "telemetry-release-comparison", "Release comparison",
        "Error rate, crash-free rate, Apdex and latency of each release (service@version) "
        "side by side: during a rollout the old and the new release run together.",
        panels, [SERVICE_VAR, RELEASE_VAR, *LINK_VARS], tags=["release"],
    )


def _with_release(rate: str) -> str:
    """``rate`` with the ``release`` (<service>@<version>) of the process that recorded each
    sample: the build info of the same job and instance supplies it, as in the release
    recording rules. The dependency metrics carry no release of their own."""
    return (f"{rate} * on (job, instance) group_left (release) "
            "group by (job, instance, release) (service_build_info)")


def dependencies() -> dict[str, Any]:
    svc = 'service=~"$service"'
    calls = f"rate(http_client_request_duration_seconds_count{{{svc}}}[$__rate_interval])"
    failed = (f"rate(http_client_request_duration_seconds_count{{{svc}, "
              'status_code!~"[1-4].."}[$__rate_interval])')
    call_buckets = f"rate(http_client_request_duration_seconds_bucket{{{svc}}}[$__rate_interval])"
    operations = f"rate(db_client_operation_duration_seconds_count{{{svc}}}[$__rate_interval])"
    operation_buckets = (
        f"rate(db_client_operation_duration_seconds_bucket{{{svc}}}[$__rate_interval])"
    )
    # By release, so each series opens the Sentry issues of the release that made the
    # calls (and the Jaeger traces of its service): a dependency failing after a deploy
    # shows as the new release's series.
    panels = [
        row(100, "Outgoing HTTP", 0),
        timeseries(
            1, "HTTP client calls by peer", "Outgoing HTTP requests per second per peer.",
            [target(f"sum by (service, release, peer) ({_with_release(calls)})",
                    "{{release}} → {{peer}}", exemplar=True)],
            "reqps", grid(0, 1, 8), links=RELEASE_LINKS,
        ),
        timeseries(
            2, "HTTP client errors by peer",
            "Share of outgoing requests answered 5xx (or without an answer) per peer.",
            [target(f"sum by (service, release, peer) ({_with_release(failed)}) / "
                    f"sum by (service, release, peer) ({_with_release(calls)})",
                    "{{release}} → {{peer}}")],
            "percentunit", grid(8, 1, 8), links=RELEASE_LINKS, minimum=0,
        ),
        timeseries(
            3, "HTTP client p95 by peer", "95th percentile duration of outgoing requests.",
            [target("histogram_quantile(0.95, sum by (service, release, peer, le) "
                    f"({_with_release(call_buckets)}))",
                    "{{release}} → {{peer}}", exemplar=True)],
            "s", grid(16, 1, 8), links=RELEASE_LINKS,
        ),
        row(101, "Databases and caches", 9),
        timeseries(
            4, "Operations by system", "Database and cache operations per second.",
            [target("sum by (service, release, system, operation) "
                    f"({_with_release(operations)})",
                    "{{release}} {{system}} {{operation}}", exemplar=True)],
            "ops", grid(0, 10), links=RELEASE_LINKS,
        ),
        timeseries(
            5, "Operation p95 by system",
            "95th percentile duration of database and cache operations.",
            [target("histogram_quantile(0.95, sum by (service, release, system, operation, le) "
                    f"({_with_release(operation_buckets)}))",
                    "{{release}} {{system}} {{operation}}", exemplar=True)],
            "s", grid(12, 10), links=RELEASE_LINKS,
        ),
        timeseries(
            6, "Operation p50 by system", "Median duration of database and cache operations.",
            [target("histogram_quantile(0.50, sum by (service, release, system, le) "
                    f"({_with_release(operation_buckets)}))",
                    "{{release}} {{system}}", exemplar=True)],
            "s", grid(0, 18, 24), links=RELEASE_LINKS,
        ),
    ]
    return dashboard(
        "telemetry-dependencies", "Dependencies",
        "What the services wait for: outgoing HTTP calls (HTTPX), PostgreSQL / SQLite "
        "(SQLAlchemy) and Redis, by release, with exemplars to the calling trace and links "
        "to the release's Sentry issues and the service's Jaeger traces.",
        panels, [SERVICE_VAR, *LINK_VARS], tags=["dependencies"],
    )


def _by_service(expr: str) -> str:
    """Pipeline counters describe the process, not a request: they carry no `service`
    label. The build info of the same process (job, instance) supplies it."""
    return (f"({expr}) * on (job, instance) group_left (service) "
            'group by (job, instance, service) (service_build_info{service=~"$service"})')


def pipeline_health() -> dict[str, Any]:
    panels = [
        timeseries(
            1, "Spans exported", "Spans per second each sink accepted.",
            [target("sum by (service, sink) (" + _by_service(
                "rate(telemetry_spans_exported_total[$__rate_interval])") + ")",
                "{{service}} → {{sink}}")],
            "short", grid(0, 0, 8),
        ),
        timeseries(
            2, "Spans failed", "Spans per second a sink refused or could not be reached for; "
            "TelemetrySpansFailed alerts on any.",
            [target("sum by (service, sink) (" + _by_service(
                "rate(telemetry_spans_failed_total[$__rate_interval])") + ")",
                "{{service}} → {{sink}}")],
            "short", grid(8, 0, 8), minimum=0,
        ),
        timeseries(
            3, "Spans dropped", "Spans per second dropped before export (queue full, shut "
            "down); TelemetrySpansDropped alerts on any.",
            [target("sum by (service, sink) (" + _by_service(
                "rate(telemetry_spans_dropped_total[$__rate_interval])") + ")",
                "{{service}} → {{sink}}")],
            "short", grid(16, 0, 8), minimum=0,
        ),
        timeseries(
            4, "Sentry events sent", "Events per second handed to Sentry, by kind.",
            [target("sum by (service, kind) (" + _by_service(
                "rate(telemetry_sentry_events_sent_total[$__rate_interval])") + ")",
                "{{service}} {{kind}}")],
            "short", grid(0, 8, 12),
        ),
        timeseries(
            5, "Sentry events dropped", "Events per second sentry-sdk discarded, by kind and "
            "reason. sample_rate, before_send and event_processor are policy; the other "
            "reasons are losses (TelemetrySentryEventsDropped).",
            [target("sum by (service, kind, reason) (" + _by_service(
                "rate(telemetry_sentry_events_dropped_total[$__rate_interval])") + ")",
                "{{service}} {{kind}} {{reason}}")],
            "short", grid(12, 8, 12), minimum=0,
        ),
        timeseries(
            6, "Metric label overflow", "Label values folded into \"<overflow>\" per second: "
            "a label hit its cardinality bound.",
            [target("sum by (service, metric, label) (" + _by_service(
                "rate(telemetry_metric_label_overflow_total[$__rate_interval])") + ")",
                "{{service}} {{metric}}.{{label}}")],
            "short", grid(0, 16, 12), minimum=0,
        ),
        timeseries(
            7, "Scrape targets up", "1 when Prometheus could scrape the target; TargetDown "
            "alerts on 0.",
            [target("min by (job, instance) (up)", "{{job}} {{instance}}")],
            "none", grid(12, 16, 12), minimum=0, maximum=1,
            threshold_steps=thresholds((None, "red"), (1, "green")),
        ),
    ]
    return dashboard(
        "telemetry-pipeline", "Telemetry pipeline",
        "Health of the telemetry itself: spans exported, failed and dropped per sink, Sentry "
        "events sent and lost, label overflow, scrape targets.",
        panels, [SERVICE_VAR, *LINK_VARS], tags=["pipeline"],
    )


# Sentry's AI agents view (insights). The org-redirect form works for any Sentry SaaS
# organisation; self-hosted: https://<host>/organizations/<org>/insights/agents/.
DEFAULT_SENTRY_AI_URL = "https://sentry.io/orgredirect/organizations/:orgslug/insights/agents/"


def _genai_links(label: str, tag: str) -> list[dict[str, Any]]:
    """Jaeger traces whose GenAI spans carry the series' model/agent/tool, and the Sentry
    issues the facade tagged with it (telemetry.genai reports failures with these tags)."""
    value = f"${{__field.labels.{label}:percentencode}}"
    return [
        jaeger_link(
            f"Jaeger traces of ${{__field.labels.{label}}}",
            f"&tags=%7B%22{tag}%22%3A%22{value}%22%7D",
        ),
        sentry_link(f"Sentry issues of ${{__field.labels.{label}}}", f"{tag}%3A%22{value}%22"),
    ]


def agents() -> dict[str, Any]:
    """LLM calls, tokens, estimated cost and tools of the agentic services (telemetry.genai).
    Panel 1 (tokens) and 6 (LLM error ratio) are the targets of the genai.yml alerts."""
    svc = 'service=~"$service"'
    rate = "[$__rate_interval]"
    model_links, agent_links = _genai_links("model", "gen_ai.request.model"), _genai_links(
        "agent", "gen_ai.agent.name")  # fmt: skip
    tool_links = _genai_links("tool", "gen_ai.tool.name")

    def ratio(errors: str, calls: str, by: str) -> str:
        # A model or tool that never failed has no error series: 0, not absent.
        return (f"(sum by ({by}) (rate({errors}{{{svc}}}{rate})) or sum by ({by}) "
                f"(rate({calls}{{{svc}}}{rate})) * 0) / sum by ({by}) "
                f"(rate({calls}{{{svc}}}{rate}))")  # fmt: skip

    panels = [
        timeseries(
            1, "Tokens by model", "Tokens per second of LLM calls, input and output, by model "
            "(LLMTokenBudgetExceeded alerts on the hourly burn).",
            [target("sum by (service, model, token_type) "
                    f"(rate(gen_ai_client_tokens_total{{{svc}}}{rate}))",
                    "{{service}} {{model}} {{token_type}}", exemplar=True)],
            "short", grid(0, 0), links=model_links,
        ),
        timeseries(
            2, "Tokens by agent", "Tokens per second used inside each agent's runs "
            "(<none>: calls outside start_agent).",
            [target(f"sum by (service, agent) (rate(gen_ai_client_tokens_total{{{svc}}}{rate}))",
                    "{{service}} {{agent}}", exemplar=True)],
            "short", grid(12, 0), links=agent_links,
        ),
        timeseries(
            3, "Estimated cost by model", "USD per hour at the price table's list prices "
            "(telemetry/genai/prices.py, TELEMETRY_GENAI_PRICES); unpriced models cost 0.",
            [target("sum by (service, model) "
                    f"(rate(gen_ai_client_cost_usd_total{{{svc}}}{rate})) * 3600",
                    "{{service}} {{model}}")],
            "currencyUSD", grid(0, 8), links=model_links, minimum=0,
        ),
        timeseries(
            4, "Estimated cost by agent", "USD per hour of the LLM calls made inside each agent.",
            [target("sum by (service, agent) "
                    f"(rate(gen_ai_client_cost_usd_total{{{svc}}}{rate})) * 3600",
                    "{{service}} {{agent}}")],
            "currencyUSD", grid(12, 8), links=agent_links, minimum=0,
        ),
        timeseries(
            5, "LLM latency p95 by model", "95th percentile duration of LLM calls; exemplars "
            "open the trace of a slow call.",
            [target("histogram_quantile(0.95, sum by (service, model, le) "
                    f"(rate(gen_ai_client_operation_duration_seconds_bucket{{{svc}}}{rate})))",
                    "{{service}} {{model}} p95", exemplar=True)],
            "s", grid(0, 16), links=model_links,
        ),
        timeseries(
            6, "LLM error ratio by model", "Share of LLM calls that failed (provider errors, "
            "timeouts, rejected requests); LLMHighErrorRate alerts above 5%.",
            [target(ratio("gen_ai_client_operation_errors_total",
                          "gen_ai_client_operation_duration_seconds_count", "service, model"),
                    "{{service}} {{model}}")],
            "percentunit", grid(12, 16), links=model_links, minimum=0, maximum=1,
            threshold_steps=thresholds((None, "green"), (0.05, "red")),
        ),
        timeseries(
            7, "Tool calls", "Tool executions per second, by tool.",
            [target(f"sum by (service, tool) (rate(gen_ai_tool_calls_total{{{svc}}}{rate}))",
                    "{{service}} {{tool}}", exemplar=True)],
            "ops", grid(0, 24), links=tool_links,
        ),
        timeseries(
            8, "Tool error ratio", "Share of tool executions that raised, by tool.",
            [target(ratio("gen_ai_tool_errors_total", "gen_ai_tool_calls_total", "service, tool"),
                    "{{service}} {{tool}}")],
            "percentunit", grid(12, 24), links=tool_links, minimum=0, maximum=1,
            threshold_steps=thresholds((None, "green"), (0.05, "red")),
        ),
        timeseries(
            9, "Agent run p95", "95th percentile duration of agent invocations.",
            [target("histogram_quantile(0.95, sum by (service, agent, le) "
                    f"(rate(gen_ai_agent_duration_seconds_bucket{{{svc}}}{rate})))",
                    "{{service}} {{agent}} p95", exemplar=True)],
            "s", grid(0, 32), links=agent_links,
        ),
        stat(
            10, "Estimated cost, last 24 h", "USD over the last 24 hours, all models.",
            [target(f"sum by (service) (increase(gen_ai_client_cost_usd_total{{{svc}}}[24h]))",
                    "{{service}}", instant=True)],
            "currencyUSD", grid(12, 32), thresholds((None, "blue")), decimals=2,
        ),
    ]
    document = dashboard(
        "telemetry-agents", "Agents",
        "LLM calls, tokens, estimated cost and tool errors of the agentic services, by model, "
        "agent and tool, with exemplars to the Jaeger trace and links to the Sentry issues "
        "and Sentry's AI agents view.",
        panels,
        [SERVICE_VAR, *LINK_VARS, textbox_variable(
            "sentry_ai_url", "Sentry AI view URL", DEFAULT_SENTRY_AI_URL,
            "Sentry's AI agents view (Insights > Agents) of your organisation.",
        )],
        tags=["agents"],
    )  # fmt: skip
    document["links"].append(
        {"title": "Sentry AI agents view", "type": "link", "url": "${sentry_ai_url:raw}",
         "targetBlank": True}
    )  # fmt: skip
    return document


DASHBOARDS = {
    "service-overview.json": service_overview,
    "release-comparison.json": release_comparison,
    "dependencies.json": dependencies,
    "telemetry-pipeline.json": pipeline_health,
    "agents.json": agents,
}


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class PanelQuery:
    dashboard_uid: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str  # dashboard variables replaced by ALL_VALUES


def render(document: dict[str, Any]) -> str:
    """The file text: stable key order and a final newline, so regeneration is byte-equal."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard document."""
    return {name: build() for name, build in DASHBOARDS.items()}


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replace ``$name`` and ``${name}`` dashboard variables; unknown names are an error so
    a new variable cannot slip into an expression the tests would then not evaluate."""
    table = ALL_VALUES if values is None else values

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(replace, expr)


def promql_expressions(values: dict[str, str] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of every panel of every dashboard, variables replaced."""
    found: list[PanelQuery] = []
    for document in dashboards().values():
        for panel in document["panels"]:
            for query in panel.get("targets", []):
                found.append(
                    PanelQuery(
                        dashboard_uid=document["uid"],
                        panel_id=panel["id"],
                        panel_title=panel["title"],
                        ref_id=query["refId"],
                        expr=substitute(query["expr"], values),
                    )
                )
    return found


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in dashboards().items():
        path = directory / name
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = DASHBOARD_DIR) -> list[str]:
    """Names of dashboard files whose content differs from what the generator makes."""
    stale = []
    for name, document in dashboards().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != render(document):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"out of date: grafana/dashboards/{name} (run python grafana/generate.py)")
        return 1 if stale else 0
    for path in write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
