"""Structural checks of grafana/: the committed dashboards are what grafana/generate.py
makes, they only refer to provisioned data sources, their links carry the variables they
need, and every panel query is PromQL that promtool accepts.

No Grafana binary is available here: what Grafana itself would reject is checked through
the documents it reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.support.processes import MissingBinaryError, require_binary

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "rules" / "alerts.yml"
RECORDING = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
METRICS_DOC = ROOT / "docs" / "metrics.md"
ENTRYPOINT = GRAFANA / "entrypoint.sh"
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _load_generator() -> ModuleType:
    # grafana/ is a directory of deploy files, not a package: load the module by path.
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


generate = _load_generator()


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    """The committed files, as Grafana reads them."""
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert files, "no dashboards committed"
    return {path.name: json.loads(path.read_text()) for path in files}


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"]: source for source in document["datasources"]}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_committed_dashboards_are_what_the_generator_makes(tmp_path: Path) -> None:
    assert generate.stale_files() == [], "run: python grafana/generate.py"
    generate.write(tmp_path)
    committed = {path.name for path in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == {path.name for path in tmp_path.glob("*.json")}
    for name in committed:
        assert (tmp_path / name).read_bytes() == (GRAFANA / "dashboards" / name).read_bytes()


def test_generator_check_mode_detects_stale_files(tmp_path: Path) -> None:
    generate.write(tmp_path)
    (tmp_path / "dependencies.json").write_text("{}\n")
    assert generate.stale_files(tmp_path) == ["dependencies.json"]
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_four_dashboards_exist_with_unique_uids(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [dashboard["uid"] for dashboard in dashboards.values()]
    assert sorted(uids) == sorted({
        "telemetry-service-overview", "telemetry-release-comparison",
        "telemetry-dependencies", "telemetry-pipeline", "telemetry-agents",
    })
    for dashboard in dashboards.values():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{dashboard['uid']}: duplicate panel ids"


def test_dashboards_refer_only_to_provisioned_datasources(
    dashboards: dict[str, dict[str, Any]], datasources: dict[str, dict[str, Any]]
) -> None:
    assert {"prometheus", "jaeger"} <= set(datasources)
    for name, dashboard in dashboards.items():
        for node in _walk(dashboard):
            source = node.get("datasource")
            if isinstance(source, dict):
                assert source["uid"] in datasources, f"{name}: unknown datasource {source}"
                assert source["type"] == datasources[source["uid"]]["type"], name


def test_exemplars_link_to_jaeger_and_sentry_by_trace_id(
    datasources: dict[str, dict[str, Any]],
) -> None:
    destinations = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # The exemplar label the library writes (docs/metrics.md).
    assert {destination["name"] for destination in destinations} == {"trace_id"}
    internal = [d for d in destinations if "datasourceUid" in d]
    external = [d for d in destinations if "url" in d]
    assert [d["datasourceUid"] for d in internal] == ["jaeger"]
    assert len(external) == 1
    # `$$` is Grafana provisioning's escape: the panel sees ${__value.raw}, the trace id.
    assert external[0]["url"] == "${SENTRY_ISSUES_URL}trace%3A$${__value.raw}"
    jaeger = datasources["jaeger"]["jsonData"]["tracesToMetrics"]
    assert jaeger["datasourceUid"] == "prometheus"
    assert {tag["value"] for tag in jaeger["tags"]} == {"service", "route"}


def test_latency_and_traffic_panels_show_exemplars(dashboards: dict[str, dict[str, Any]]) -> None:
    overview = dashboards["service-overview.json"]
    by_title = {panel["title"]: panel for panel in _panels(overview)}
    latency = by_title["Latency p50 / p95 / p99"]
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.50", "histogram_quantile(0.95", "histogram_quantile(0.99"
    ]
    assert all(target["exemplar"] for target in latency["targets"])
    assert all(target["exemplar"] for target in by_title["Throughput"]["targets"])


def test_data_links_carry_their_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    links = [
        (name, link)
        for name, dashboard in dashboards.items()
        for panel in _panels(dashboard)
        for link in panel["fieldConfig"]["defaults"].get("links", [])
    ]
    assert links
    for name, link in links:
        url = link["url"]
        assert url.startswith(("${sentry_issues_url:raw}", "${jaeger_url:raw}/search?")), url
        assert re.search(r"\$\{__field\.labels\.(service|route|release|model|agent|tool)", url), (
            name, url,
        )
    sentry_queries = {
        re.sub(r"%3A.*", "", link["url"].removeprefix("${sentry_issues_url:raw}"))
        for _, link in links
        if link["url"].startswith("${sentry_issues_url")
    }
    # From a release to its issues, from a route to the issues of that transaction.
    # From a model, agent or tool (Agents dashboard) to the issues the GenAI facade tagged.
    assert sentry_queries == {
        "release", "transaction", "gen_ai.request.model", "gen_ai.agent.name", "gen_ai.tool.name"
    }


def test_red_and_dependency_dashboards_link_every_panel_to_sentry_and_jaeger(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name in ("service-overview.json", "release-comparison.json", "dependencies.json"):
        kinds = set()
        for panel in _panels(dashboards[name]):
            urls = [link["url"] for link in panel["fieldConfig"]["defaults"].get("links", [])]
            kinds |= {url.split(":", 1)[0] for url in urls}
            if name == "dependencies.json":
                # Every dependency panel: the release's issues and the service's traces.
                assert any(url.startswith("${sentry_issues_url") for url in urls), panel["title"]
                assert any(url.startswith("${jaeger_url") for url in urls), panel["title"]
        assert kinds == {"${sentry_issues_url", "${jaeger_url"}, name


def _series_labels(expr: str) -> set[str]:
    """Labels the series of a panel query carry: its outermost `by (...)` grouping (the
    first one written; inner ones, like a join's `group by`, do not reach the result), and
    the labels a recording rule's name announces (service_release:... carries service and
    release)."""
    outermost = re.search(r"\bby \(([^)]*)\)", expr)
    labels = {label.strip() for label in outermost.group(1).split(",")} if outermost else set()
    for record in re.findall(r"\b([a-z_]+):[a-z0-9_]+:[a-z0-9_]+\b", expr):
        labels |= set(record.split("_"))
    return labels - {""}


def test_panel_links_use_only_labels_their_series_carry(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """A link to ${__field.labels.release} on a series without `release` opens an empty
    search: every label a link reads must survive the panel query's aggregation."""
    checked = 0
    for name, dashboard in dashboards.items():
        for panel in _panels(dashboard):
            links = panel["fieldConfig"]["defaults"].get("links", [])
            wanted = {
                label
                for link in links
                for label in re.findall(r"\$\{__field\.labels\.(\w+)", link["url"])
            }
            for query in panel.get("targets", []):
                carried = _series_labels(query["expr"])
                assert wanted <= carried, (name, panel["title"], sorted(wanted - carried))
                checked += bool(wanted)
    assert checked >= 20


def test_link_variables_have_working_local_defaults(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["jaeger_url"]["query"] == "http://127.0.0.1:16686"
        assert variables["sentry_issues_url"]["query"] == "http://127.0.0.1:8080/issues/1/all/?q="
        assert variables["service"]["datasource"]["uid"] == "prometheus"


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    try:
        promtool = require_binary("promtool", "prometheus")
    except MissingBinaryError as error:
        pytest.fail(str(error), pytrace=False)
    queries = generate.promql_expressions()
    assert len(queries) >= 30
    # promtool parses expressions only inside rule files: one recording rule per query.
    rules = {
        "groups": [{
            "name": "grafana-panels",
            "rules": [
                {"record": f"panel:{q.dashboard_uid.replace('-', '_')}:{q.panel_id}_{q.ref_id}",
                 "expr": q.expr}
                for q in queries
            ],
        }]
    }
    path = tmp_path / "panels.yml"
    path.write_text(json.dumps(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout


def test_promql_expressions_replace_every_variable() -> None:
    for query in generate.promql_expressions():
        assert "$" not in query.expr, query
    with pytest.raises(KeyError, match=r"\$unknown"):
        generate.substitute('up{job="$unknown"}')


def test_panels_use_documented_metrics_and_existing_recording_rules() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", METRICS_DOC.read_text(), re.MULTILINE))
    recorded = {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for query in generate.promql_expressions():
        for name in re.findall(r"\b([a-z_]+:[a-z0-9_:]+)\b", query.expr):
            assert name in recorded, f"{query.panel_title}: no recording rule {name}"
        metric = r"\b((?:http|db|telemetry|gen_ai)_[a-z_]+|service_build_info)\b(?!:)"
        for name in re.findall(metric, query.expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in documented, f"{query.panel_title}: {name} not in docs/metrics.md"


def test_alert_links_open_existing_panels(dashboards: dict[str, dict[str, Any]]) -> None:
    panels = {
        dashboard["uid"]: {panel["id"] for panel in dashboard["panels"]}
        for dashboard in dashboards.values()
    }
    links = [
        rule["annotations"]["dashboard"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert links
    for link in links:
        match = re.search(r"/d/([\w-]+)/[\w-]+\?.*viewPanel=(\d+)", link)
        assert match, link
        uid, panel_id = match.group(1), int(match.group(2))
        assert uid in panels, link
        assert panel_id in panels[uid], link


# --------------------------------------------------------------------------- link URLs
#
# Grafana interpolates the environment in provisioning files only, never in dashboard JSON
# (its provisioning documentation says so), so in the compose stack grafana/entrypoint.sh
# writes the dashboards with JAEGER_PUBLIC_URL and SENTRY_ISSUES_URL as the link
# variables' values before it starts Grafana.

LINK_DEFAULTS = {
    "jaeger_url": ("JAEGER_PUBLIC_URL", generate.DEFAULT_JAEGER_URL),
    "sentry_issues_url": ("SENTRY_ISSUES_URL", generate.DEFAULT_SENTRY_ISSUES_URL),
}


def _entrypoint_default(name: str) -> str:
    match = re.search(rf'^{name}="([^"]*)"$', ENTRYPOINT.read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


def _entrypoint_setting(variable: str) -> str:
    match = re.search(rf'"\$\{{{variable}:-([^}}]*)\}}"', ENTRYPOINT.read_text())
    assert match, variable
    return match.group(1)


def _shells() -> list[Any]:
    """Debian's sh (dash) and busybox sh: Grafana's image is busybox/Alpine or Ubuntu."""
    busybox = shutil.which("busybox")
    return [
        pytest.param(["sh"], id="dash"),
        pytest.param([busybox or "busybox", "sh"], id="busybox",
                     marks=pytest.mark.skipif(busybox is None, reason="apt-get install busybox")),
    ]


def _render(
    shell: list[str], tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "run.sh"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n')
    stub.chmod(0o755)
    return subprocess.run(
        [*shell, str(ENTRYPOINT), "--some-grafana-flag"],
        env={
            "PATH": os.environ["PATH"],
            "DASHBOARDS_SOURCE_DIR": str(GRAFANA / "dashboards"),
            "DASHBOARDS_DIR": str(tmp_path / "provisioned"),
            "GRAFANA_ENTRYPOINT": str(stub),
            "STUB_ARGS": str(tmp_path / "grafana-args"),
            **env,
        },
        capture_output=True, text=True, timeout=60, check=False,
    )


def _link_variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        variable["name"]: variable
        for variable in dashboard["templating"]["list"]
        if variable["name"] in LINK_DEFAULTS
    }


def test_entrypoint_knows_the_generators_defaults() -> None:
    assert _entrypoint_default("default_jaeger_url") == generate.DEFAULT_JAEGER_URL
    assert _entrypoint_default("default_sentry_issues_url") == generate.DEFAULT_SENTRY_ISSUES_URL


def test_link_defaults_appear_only_as_their_variables_values(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """The entrypoint replaces each quoted default wherever it occurs: it must occur in
    the variable's query and current value only, never in a panel or a description."""
    for name in dashboards:
        text = (GRAFANA / "dashboards" / name).read_text()
        variables = _link_variables(dashboards[name])
        assert set(variables) == set(LINK_DEFAULTS), name
        for variable, (_, default) in LINK_DEFAULTS.items():
            held = variables[variable]
            assert held["query"] == held["current"]["text"] == held["current"]["value"] == default
            assert text.count(json.dumps(default)) == 3, (name, variable)


@pytest.mark.parametrize("shell", _shells())
@pytest.mark.parametrize(
    ("jaeger_url", "sentry_issues_url"),
    [
        ("https://ops.example.com/jaeger", "https://bugsink.example.com/issues/3/all/?q="),
        ("http://10.0.0.5:16686", "https://acme.sentry.io/issues/?project=42&query="),
        # sed's and JSON's special characters arrive as written.
        ("https://j.example/a|b&c", 'https://s.example/x\\y"z/?q=&a=|'),
    ],
)
def test_entrypoint_renders_the_link_variables_from_the_environment(
    shell: list[str], jaeger_url: str, sentry_issues_url: str, tmp_path: Path,
    dashboards: dict[str, dict[str, Any]],
) -> None:
    result = _render(shell, tmp_path, {
        "JAEGER_PUBLIC_URL": jaeger_url, "SENTRY_ISSUES_URL": sentry_issues_url,
    })
    assert result.returncode == 0, result.stderr
    # Grafana starts afterwards, with the arguments it was given.
    assert (tmp_path / "grafana-args").read_text().splitlines() == ["--some-grafana-flag"]
    rendered_files = sorted((tmp_path / "provisioned").glob("*.json"))
    assert [path.name for path in rendered_files] == sorted(dashboards)
    wanted = {"jaeger_url": jaeger_url, "sentry_issues_url": sentry_issues_url}
    for path in rendered_files:
        rendered = json.loads(path.read_text())
        for name, variable in _link_variables(rendered).items():
            assert variable["query"] == wanted[name], (path.name, name)
            assert variable["current"] == {"text": wanted[name], "value": wanted[name]}
        # Everything else is the committed dashboard, untouched.
        committed = json.loads(json.dumps(dashboards[path.name]))
        for name, variable in _link_variables(committed).items():
            variable["query"] = wanted[name]
            variable["current"] = {"text": wanted[name], "value": wanted[name]}
        assert rendered == committed, path.name


@pytest.mark.parametrize("shell", _shells())
def test_entrypoint_without_the_variables_keeps_the_committed_dashboards(
    shell: list[str], tmp_path: Path
) -> None:
    (tmp_path / "provisioned").mkdir()
    (tmp_path / "provisioned" / "stale.json").write_text("{}")  # from an older start
    result = _render(shell, tmp_path, {"JAEGER_PUBLIC_URL": ""})
    assert result.returncode == 0, result.stderr
    rendered = {path.name: path.read_bytes() for path in (tmp_path / "provisioned").iterdir()}
    committed = {path.name: path.read_bytes() for path in (GRAFANA / "dashboards").glob("*.json")}
    assert rendered == committed


@pytest.mark.parametrize("shell", _shells())
def test_entrypoint_refuses_a_url_with_control_characters(
    shell: list[str], tmp_path: Path
) -> None:
    result = _render(shell, tmp_path, {"JAEGER_PUBLIC_URL": "http://a.example/\nb"})
    assert result.returncode != 0
    assert "control characters" in result.stderr
    assert not (tmp_path / "grafana-args").exists()


def test_compose_grafana_renders_from_the_mounted_dashboards_into_the_providers_path() -> None:
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]
    mounts = {
        target: source
        for source, target, *_ in (volume.split(":") for volume in service["volumes"])
    }
    script_path = service["entrypoint"][-1]
    assert service["entrypoint"] == ["/bin/sh", script_path]
    assert (ROOT / mounts[script_path]).resolve() == ENTRYPOINT
    source_dir = _entrypoint_setting("DASHBOARDS_SOURCE_DIR")
    assert (ROOT / mounts[source_dir]).resolve() == GRAFANA / "dashboards"
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    target_dir = _entrypoint_setting("DASHBOARDS_DIR")
    assert provider["options"]["path"] == target_dir
    # Rendered onto Grafana's own data volume (writable by its user), not a bind mount.
    data_mount = next(target for target, source in mounts.items() if source == "grafana-data")
    assert target_dir.startswith(f"{data_mount}/")
    assert target_dir not in mounts
    assert _entrypoint_setting("GRAFANA_ENTRYPOINT") == "/run.sh"
    for variable, _ in LINK_DEFAULTS.values():
        assert variable in service["environment"], variable
