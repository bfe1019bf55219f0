"""Checks of deploy/prometheus and deploy/alertmanager with the real Debian tools:
`promtool check config|rules`, `promtool test rules` (the unit tests in
deploy/prometheus/tests/), `amtool check-config` and `amtool config routes test`.

Missing tools fail the test with the apt command that installs them: CI must never turn
an absent binary into a silently skipped check.
"""

from __future__ import annotations

import math
import os
import re
import shutil
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
ALERTMANAGER_ENTRYPOINT = ROOT / "deploy" / "alertmanager" / "entrypoint.sh"
PLACEHOLDER_KEY = ROOT / "deploy" / "alertmanager" / "secrets.example" / "pagerduty_routing_key"
COMPOSE_FILE = ROOT / "docker-compose.yml"
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


# ----------------------------------------------------- PagerDuty only with a routing key


def _shells() -> list[Any]:
    """The entrypoint runs under the image's busybox sh; dash (Debian's sh) too, as a
    second POSIX shell. busybox is Debian's package `busybox`."""
    shells: list[Any] = [pytest.param(["sh"], id="dash")]
    busybox = shutil.which("busybox")
    shells.append(pytest.param(
        [busybox or "busybox", "sh"], id="busybox",
        marks=pytest.mark.skipif(busybox is None, reason="apt-get install busybox"),
    ))
    return shells


def _run_entrypoint(shell: list[str], key_file: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Run entrypoint.sh with a stub in place of /bin/alertmanager: the arguments the stub
    received, and what the entrypoint said."""
    received = tmp_path / "received-args"
    stub = tmp_path / "alertmanager-stub"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n')
    stub.chmod(0o755)
    result = subprocess.run(
        [*shell, str(ALERTMANAGER_ENTRYPOINT), f"--config.file={ALERTMANAGER_CONFIG}",
         "--storage.path=/alertmanager", "--web.external-url=http://127.0.0.1:9093"],
        env={
            "PATH": os.environ["PATH"],
            "PAGERDUTY_ROUTING_KEY_FILE": str(key_file),
            "ALERTMANAGER_BINARY": str(stub),
            "ALERTMANAGER_RENDERED_CONFIG_DIR": str(tmp_path / "rendered"),
            "STUB_ARGS": str(received),
        },
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return received.read_text().splitlines(), result.stderr


def _page_receivers(amtool: str, config: Path) -> str:
    result = _run([
        amtool, "config", "routes", "test", f"--config.file={config}",
        "severity=page", "alertname=HighErrorRate", "service=api",
    ])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("shell", _shells())
@pytest.mark.parametrize("key", ["placeholder", "empty", "missing", "blank-lines"])
def test_without_a_routing_key_pages_reach_slack_but_never_pagerduty(
    amtool: str, shell: list[str], key: str, tmp_path: Path
) -> None:
    key_file = {
        "placeholder": PLACEHOLDER_KEY,  # what compose mounts unless .env says otherwise
        "empty": tmp_path / "empty",
        "missing": tmp_path / "absent",
        "blank-lines": tmp_path / "blank",
    }[key]
    if key == "empty":
        key_file.write_text("")
    if key == "blank-lines":
        key_file.write_text("\n  \n")
    args, said = _run_entrypoint(shell, key_file, tmp_path)
    config = Path(args[0].removeprefix("--config.file="))
    assert config == tmp_path / "rendered" / "alertmanager.yml"
    # Every other argument passes through untouched, in order.
    assert args[1:] == ["--storage.path=/alertmanager", "--web.external-url=http://127.0.0.1:9093"]
    assert "pages go to Slack only" in said
    # amtool on the config Alertmanager gets: a page reaches the integration-less receiver
    # and Slack; the committed config (with a key) would have paged PagerDuty.
    assert _page_receivers(amtool, config) == "pagerduty-not-configured,slack"
    assert _page_receivers(amtool, ALERTMANAGER_CONFIG) == "pagerduty,slack"
    checked = _run([amtool, "check-config", str(config)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The copy differs from the committed config in that one route, and nothing else; its
    # templates resolve as the original's do.
    rendered, committed = _load(config), _load(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"]: receiver for receiver in rendered["receivers"]}
    assert set(receivers["pagerduty-not-configured"]) == {"name"}, "an integration-less receiver"
    committed["route"]["routes"][0]["receiver"] = "pagerduty-not-configured"
    assert rendered == committed
    for template in rendered["templates"]:
        assert list(config.parent.glob(template)), template


@pytest.mark.parametrize("shell", _shells())
def test_with_a_routing_key_the_config_is_used_as_it_is(
    amtool: str, shell: list[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "pagerduty_routing_key"
    key_file.write_text("0123456789abcdef0123456789abcdef\n")
    args, said = _run_entrypoint(shell, key_file, tmp_path)
    assert args == [f"--config.file={ALERTMANAGER_CONFIG}", "--storage.path=/alertmanager",
                    "--web.external-url=http://127.0.0.1:9093"]
    assert "pages go to PagerDuty" in said
    assert not (tmp_path / "rendered").exists()
    assert _page_receivers(amtool, ALERTMANAGER_CONFIG) == "pagerduty,slack"


def test_compose_runs_alertmanager_through_the_entrypoint_with_the_secret_it_reads() -> None:
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["alertmanager"]
    mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
    mounted_dir = next(
        target for source, target in mounts.items()
        if (ROOT / source).resolve() == ALERTMANAGER_CONFIG.parent
    )
    assert service["entrypoint"] == ["/bin/sh", f"{mounted_dir}/entrypoint.sh"]
    assert f"--config.file={mounted_dir}/alertmanager.yml" in service["command"]
    script = ALERTMANAGER_ENTRYPOINT.read_text()
    # Compose mounts a service's secrets at /run/secrets/<name>; the script reads that one,
    # and renders into the storage path, a volume the image's user can write.
    assert "pagerduty_routing_key" in service["secrets"]
    assert "${PAGERDUTY_ROUTING_KEY_FILE:-/run/secrets/pagerduty_routing_key}" in script
    storage = next(
        arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--storage.path=")
    )
    assert f"${{ALERTMANAGER_RENDERED_CONFIG_DIR:-{storage}/" in script
    assert any(volume.endswith(f":{storage}") for volume in service["volumes"])
    # The placeholder the compose default mounts is the one the script recognises.
    assert PLACEHOLDER_KEY.read_text().strip() == "not-configured"
    assert 'placeholder="not-configured"' in script


# ---------------------------------------------------- Prometheus 3's left-open ranges
#
# The compose stack runs Prometheus 3; promtool here is Debian's 2.42 (no 3.x promtool is
# packaged on PyPI, npm or Debian). 3.0 made range selectors and the lookback delta
# left-open: a sample exactly at the left edge of [5m] (or 5 minutes old) is no longer
# selected. The rules are kept robust to it (every range spans many scrape intervals) and
# their unit tests are also run with each range shortened by 1 ms, which on the tests'
# one-minute sample grid selects exactly the samples Prometheus 3 selects.

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = r"(?:\d+(?:ms|[smhdwy]))"
_RANGE = re.compile(rf"\[(?P<range>{_DURATION}+)(?::(?P<step>{_DURATION}*))?\]")


def _seconds(duration: str) -> float:
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def _scrape_intervals() -> dict[str, float]:
    """Every scrape interval the rules' inputs arrive at: compose and the k8s monitors."""
    config = _load(PROMETHEUS_DIR / "prometheus.yml")
    default = config["global"]["scrape_interval"]
    intervals = {
        f"compose {job['job_name']}": _seconds(job.get("scrape_interval", default))
        for job in config["scrape_configs"]
    }
    monitors = ROOT / "deploy" / "k8s" / "base" / "servicemonitors.yaml"
    for document in yaml.safe_load_all(monitors.read_text()):
        for endpoint in document["spec"]["endpoints"]:
            intervals[f"k8s {document['metadata']['name']}"] = _seconds(endpoint["interval"])
    return intervals


def test_every_range_spans_at_least_four_scrape_intervals() -> None:
    """Under Prometheus 3 a window of N scrape intervals holds N samples (2.x: N + 1 when
    one fell on the edge). With N >= 4, rate() keeps several samples after a failed scrape
    and extrapolates over the excluded edge; the rules' [5m] at 15 s hold 20."""
    intervals = _scrape_intervals()
    longest = max(intervals.values())
    assert longest == 15, intervals
    ranges = 0
    for rule in _rules("expr"):
        for match in _RANGE.finditer(rule["expr"]):
            ranges += 1
            name = rule.get("record") or rule.get("alert")
            assert _seconds(match.group("range")) >= 4 * longest, (name, match.group(0))
            if match.group("step"):
                # A subquery: its own steps are the samples of the outer function.
                assert _seconds(match.group("range")) >= 4 * _seconds(match.group("step"))
    assert ranges >= 12
    # Grafana's $__rate_interval is max(4 x timeInterval, step + timeInterval): the data
    # source must know the real scrape interval.
    datasources = _load(ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    prometheus = next(d for d in datasources["datasources"] if d["uid"] == "prometheus")
    scrape = _load(PROMETHEUS_DIR / "prometheus.yml")["global"]["scrape_interval"]
    assert prometheus["jsonData"]["timeInterval"] == scrape


def _left_open(text: str) -> str:
    """Each range and subquery range 1 ms shorter: [5m] -> [299999ms], [1h:1m] -> ..."""
    def shorter(match: re.Match[str]) -> str:
        milliseconds = round(_seconds(match.group("range")) * 1000) - 1
        step = match.group("step")
        return f"[{milliseconds}ms]" if step is None else f"[{milliseconds}ms:{step}]"

    return _RANGE.sub(shorter, text)


def _write_left_open_copy(directory: Path) -> Path:
    (directory / "rules").mkdir()
    (directory / "tests").mkdir()
    for path in RULES:
        (directory / "rules" / path.name).write_text(_left_open(path.read_text()))
    for path in RULE_TESTS:
        (directory / "tests" / path.name).write_text(path.read_text())
    return directory / "tests"


_SAMPLE = re.compile(r'(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}) ([-+0-9.eEInfNa]+)')


def _failed_samples(output: str) -> list[tuple[dict[str, float], dict[str, float]]]:
    """(expected, got) samples of each failed promql_expr_test in promtool's report."""
    pairs = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("exp:") and i + 1 < len(lines):
            expected = {labels: float(value) for labels, value in _SAMPLE.findall(line)}
            got = {labels: float(value) for labels, value in _SAMPLE.findall(lines[i + 1])}
            pairs.append((expected, got))
    return pairs


def test_the_left_open_emulation_selects_what_prometheus_3_selects(
    promtool: str, tmp_path: Path
) -> None:
    """The rewrite on a case where the edge matters: six samples a minute apart, counted
    over [5m] at the last one. 2.x counts 6; Prometheus 3 counts 5, and so does 2.x on the
    rewritten range."""
    rule = {"groups": [{"name": "edge", "rules": [
        {"record": "edge:count", "expr": "count_over_time(x[5m])"},
        {"record": "edge:rate", "expr": "rate(c[5m])"},
    ]}]}
    (tmp_path / "closed.yml").write_text(yaml.safe_dump(rule))
    (tmp_path / "open.yml").write_text(_left_open(yaml.safe_dump(rule)))
    for rule_file, count in (("closed.yml", 6), ("open.yml", 5)):
        test = {
            "rule_files": [rule_file],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": [{"series": "x", "values": "1x5"},
                                 {"series": "c", "values": "0+60x5"}],
                "promql_expr_test": [
                    {"expr": "edge:count", "eval_time": "5m",
                     "exp_samples": [{"labels": "edge:count", "value": count}]},
                    # A steady counter: the same rate either way (extrapolation).
                    {"expr": "edge:rate", "eval_time": "5m",
                     "exp_samples": [{"labels": "edge:rate", "value": 1}]},
                ],
            }],
        }
        (tmp_path / f"test-{rule_file}").write_text(yaml.safe_dump(test))
        result = _run([promtool, "test", "rules", f"test-{rule_file}"], cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_hold_with_left_open_ranges(promtool: str, tmp_path: Path) -> None:
    """Every alert test passes unchanged (eval times sit whole windows inside each phase
    of the input series); every recording-rule value agrees to within rounding (the
    rewritten range is 1 ms shorter, and rate() divides by it)."""
    tests_dir = _write_left_open_copy(tmp_path)
    assert "[299999ms]" in (tmp_path / "rules" / "recording.yml").read_text()
    alerts = _run([promtool, "test", "rules", "alerts_test.yml"], cwd=tests_dir)
    assert alerts.returncode == 0, alerts.stdout + alerts.stderr
    recording = _run([promtool, "test", "rules", "recording_test.yml"], cwd=tests_dir)
    if recording.returncode == 0:
        return
    report = recording.stdout + recording.stderr
    failures = _failed_samples(report)
    assert failures, report
    # Every failure is a value comparison (no missing or extra series, no other error).
    assert report.count("expr:") == len(failures), report
    for expected, got in failures:
        assert set(expected) == set(got), (expected, got)
        for labels, value in expected.items():
            assert math.isclose(got[labels], value, rel_tol=1e-6, abs_tol=1e-12), (
                labels, value, got[labels],
            )
