"""Checks of deploy/prometheus and deploy/alertmanager with the real Debian tools:
`promtool check config|rules`, `promtool test rules` (the unit tests in
deploy/prometheus/tests/), `amtool check-config` and `amtool config routes test`.

Missing tools fail the test with the apt command that installs them: CI must never turn
an absent binary into a silently skipped check.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import MissingBinaryError, require_binary

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

LINK_ANNOTATIONS = ("dashboard", "jaeger", "sentry")


def _tool(binary: str, apt_package: str) -> str:
    try:
        return require_binary(binary, apt_package)
    except MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return _tool("amtool", "prometheus-alertmanager")


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _promtool_version(promtool: str) -> tuple[int, int]:
    output = _run([promtool, "--version"])
    match = re.search(r"version (\d+)\.(\d+)", output.stdout + output.stderr)
    assert match, output.stdout + output.stderr
    return int(match.group(1)), int(match.group(2))


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules(kind: str) -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in _load(path)["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_is_valid(promtool: str, tmp_path: Path) -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    if _promtool_version(promtool) >= (2, 49):
        result = _run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    else:
        # scrape_protocols appeared in Prometheus 2.49 and the compose stack runs 3.x, but
        # Debian bookworm's promtool is 2.42 and rejects the key. Everything else is
        # checked by promtool on a copy without it; the key itself is checked below.
        del config["global"]["scrape_protocols"]
        (tmp_path / "rules").symlink_to(PROMETHEUS_DIR / "rules")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        result = _run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule files were found and parsed, not just the config.
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout, result.stdout


def test_prometheus_asks_for_openmetrics_first_so_exemplars_arrive() -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    protocols = config["global"]["scrape_protocols"]
    assert protocols[0] == "OpenMetricsText1.0.0"
    for job in config["scrape_configs"]:
        assert "scrape_protocols" not in job or job["scrape_protocols"][0].startswith(
            "OpenMetrics"
        ), job["job_name"]


def test_prometheus_scrapes_the_whole_stack() -> None:
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"api", "model-provider", "jaeger", "jaeger-spanmetrics", "alertmanager",
            "grafana", "prometheus"} <= set(jobs)
    for job in jobs.values():
        # A target label `service` would rename the app's own `service` label.
        for static in job["static_configs"]:
            assert "service" not in static.get("labels", {}), job["job_name"]
    # The alert links are built from these.
    assert set(config["global"]["external_labels"]) == {
        "grafana_url", "jaeger_url", "sentry_issues_url"
    }


def test_rule_files_are_valid(promtool: str) -> None:
    assert RULES, "no rule files"
    result = _run([promtool, "check", "rules", *map(str, RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no promtool unit tests"
    result = _run([promtool, "test", "rules", *map(str, RULE_TESTS)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_recording_rule_has_a_unit_test() -> None:
    tested = {
        case["expr"].split("{", 1)[0].strip()
        for path in RULE_TESTS
        for group in _load(path)["tests"]
        for case in group.get("promql_expr_test", [])
    }
    records = {rule["record"] for rule in _rules("record")}
    assert records, "no recording rules"
    assert records <= tested, f"untested recording rules: {sorted(records - tested)}"


def test_every_alert_fires_stays_silent_and_resolves_in_unit_tests() -> None:
    cases: dict[str, list[dict[str, Any]]] = {}
    for path in RULE_TESTS:
        for group in _load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(case)
    alertnames = {rule["alert"] for rule in _rules("alert")}
    assert alertnames <= set(cases), f"alerts without tests: {sorted(alertnames - set(cases))}"
    for name in alertnames:
        timeline = sorted(cases[name], key=lambda case: _minutes(case["eval_time"]))
        firing = [bool(case.get("exp_alerts")) for case in timeline]
        # silent before, firing at some point, silent again after.
        assert not firing[0] and not firing[-1] and any(firing), f"{name}: {firing}"
        severities = {
            alert["exp_labels"]["severity"]
            for case in timeline
            for alert in case.get("exp_alerts") or []
        }
        declared = {rule["labels"]["severity"] for rule in _rules("alert") if rule["alert"] == name}
        assert severities == declared, f"{name}: tested {severities}, declared {declared}"


def _minutes(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[match.group(2)]


def test_every_alert_has_severity_text_and_links() -> None:
    alerts = _rules("alert")
    names = {rule["alert"] for rule in alerts}
    assert {"HighErrorRate", "HighLatencyP95", "LowApdex", "TelemetrySpansDropped",
            "TelemetrySpansFailed", "TelemetrySentryEventsDropped", "TargetDown"} <= names
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning"}, name
        annotations = rule["annotations"]
        for key in ("summary", "description", *LINK_ANNOTATIONS):
            assert annotations.get(key), f"{name} lacks the {key} annotation"
        assert annotations["dashboard"].startswith("{{ $externalLabels.grafana_url }}/d/"), name
        assert "service={{ $labels.service" in annotations["dashboard"], name
        assert annotations["jaeger"].startswith("{{ $externalLabels.jaeger_url }}/search?"), name
        assert "service={{ $labels.service" in annotations["jaeger"], name
        assert annotations["sentry"].startswith("{{ $externalLabels.sentry_issues_url }}"), name
        assert "$labels.release" in annotations["sentry"], name


def test_every_page_has_a_warning_twin_for_inhibition() -> None:
    """Alertmanager's inhibition pairs alerts by alertname: a page without a warning twin
    is fine, but a twin must share the alertname, never a variant of it."""
    by_name: dict[str, set[str]] = {}
    for rule in _rules("alert"):
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    twins = {name for name, severities in by_name.items() if severities == {"page", "warning"}}
    assert {"HighErrorRate", "HighLatencyP95", "LowApdex", "TargetDown"} <= twins


def test_rules_use_only_documented_metrics() -> None:
    """docs/metrics.md is the contract with the library: a rule on a metric it does not
    serve would never fire."""
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", METRICS_DOC.read_text(), re.MULTILINE))
    assert "http_server_requests_total" in documented
    exprs = " ".join(rule["expr"] for rule in _rules("expr"))
    used = set(
        re.findall(r"\b((?:http|db|telemetry)_[a-z_]+|service_build_info)\b(?!:)", exprs)
    )
    recorded_names = {rule["record"] for rule in _rules("record")}
    for metric in used - recorded_names:
        base = re.sub(r"_(bucket|count|sum)$", "", metric)
        assert base in documented, f"{metric} is not in docs/metrics.md"


# --------------------------------------------------------------------------- Alertmanager


def test_alertmanager_config_is_valid(amtool: str) -> None:
    result = _run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=page", "alertname=HighErrorRate", "service=api"], "pagerduty,slack"),
        (["severity=warning", "alertname=HighErrorRate", "service=api"], "slack"),
        (["alertname=Unlabelled"], "slack"),
    ],
)
def test_alertmanager_routes_by_severity(amtool: str, labels: list[str], receivers: str) -> None:
    result = _run([
        amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receivers}", *labels,
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_alertmanager_groups_by_alert_and_service_and_inhibits_warning_twins() -> None:
    config = _load(ALERTMANAGER_CONFIG)
    assert config["route"]["group_by"] == ["alertname", "service"]
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="page"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "service"],
        }
    ]
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert receivers["slack"]["slack_configs"][0]["api_url_file"].startswith("/run/secrets/")
    pagerduty = receivers["pagerduty"]["pagerduty_configs"][0]
    assert pagerduty["routing_key_file"].startswith("/run/secrets/")
    for template in config["templates"]:
        assert list(ALERTMANAGER_CONFIG.parent.glob(template)), template
