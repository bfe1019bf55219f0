"""Offline checks of the Collector tier (deploy/otel-collector/): no Collector binary runs
here, so the configs are checked for what the Collector itself would reject at start
(undefined or unknown components, missing required fields, connectors wired one way) and
for what it would accept but get wrong (sampling after spanmetrics, a secret inlined, a
critical route the services and the gateway disagree on).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry import TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_DIR = ROOT / "deploy" / "otel-collector"
GATEWAY = COLLECTOR_DIR / "gateway.yaml"
AGENT = COLLECTOR_DIR / "agent.yaml"
GATEWAY_LOCAL = COLLECTOR_DIR / "gateway-local.yaml"
PROMETHEUS_JOBS = COLLECTOR_DIR / "prometheus-job.yml"
MEASURE = COLLECTOR_DIR / "measure_spans.py"
README = ROOT / "deploy" / "README.md"
COMPOSE = ROOT / "docker-compose.yml"

COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.135.0"

# Component type names of otelcol-contrib 0.135.0 that these configs may use, with the
# README they are documented in (opentelemetry-collector = core, -contrib = contrib):
KNOWN_COMPONENTS: dict[str, set[str]] = {
    "receivers": {
        "otlp",  # core receiver/otlpreceiver
    },
    "processors": {
        "batch",  # core processor/batchprocessor
        "memory_limiter",  # core processor/memorylimiterprocessor
        "tail_sampling",  # contrib processor/tailsamplingprocessor
    },
    "exporters": {
        "otlp",  # core exporter/otlpexporter
        "otlphttp",  # core exporter/otlphttpexporter
        "loadbalancing",  # contrib exporter/loadbalancingexporter
        "prometheus",  # contrib exporter/prometheusexporter
        "debug",  # core exporter/debugexporter
    },
    "connectors": {
        "spanmetrics",  # contrib connector/spanmetricsconnector
        "forward",  # core connector/forwardconnector
    },
    "extensions": {
        "health_check",  # contrib extension/healthcheckextension
        "pprof",  # contrib extension/pprofextension
        "zpages",  # core extension/zpagesextension
    },
}

# Policy types of the tail_sampling processor (contrib processor/tailsamplingprocessor
# README); every policy carries a block named after its type.
TAIL_SAMPLING_POLICY_TYPES = {
    "always_sample", "latency", "numeric_attribute", "probabilistic", "status_code",
    "string_attribute", "trace_state", "trace_flags", "rate_limiting", "bytes_limiting",
    "span_count", "boolean_attribute", "ottl_condition", "and", "drop", "composite",
}

# Signal types a connector consumes (as an exporter) and produces (as a receiver).
CONNECTOR_SIGNALS = {"spanmetrics": ("traces", "metrics")}

_ENV_REFERENCE = re.compile(r"^\$\{env:[A-Z_][A-Z0-9_]*\}$")


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def merge(base: Any, override: Any) -> Any:
    """The Collector's merge of several --config files: maps merge key by key, anything
    else (lists included) is replaced by the later file."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def signal_of(pipeline_id: str) -> str:
    return component_type(pipeline_id)


def duration_seconds(text: str | int | float) -> float:
    """A Go duration as the Collector writes them: 500ms, 2s, 1m, 100us."""
    if isinstance(text, int | float):
        return float(text)
    units = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, rest = 0.0, text.strip()
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)", rest):
        total += float(number) * units[unit]
    assert re.fullmatch(r"((\d+(\.\d+)?)(us|µs|ms|s|m|h))+", rest), f"not a duration: {text}"
    return total


CONFIGS = {
    "gateway": lambda: load(GATEWAY),
    "agent": lambda: load(AGENT),
    "gateway+local": lambda: merge(load(GATEWAY), load(GATEWAY_LOCAL)),
}


@pytest.fixture(params=sorted(CONFIGS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    built: dict[str, Any] = CONFIGS[request.param]()
    return built


@pytest.fixture(scope="module")
def gateway() -> dict[str, Any]:
    return load(GATEWAY)


@pytest.fixture(scope="module")
def agent() -> dict[str, Any]:
    return load(AGENT)


def policies_by_type(gateway: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in gateway["processors"]["tail_sampling"]["policies"]:
        found.setdefault(policy["type"], []).append(policy)
    return found


# --------------------------------------------------------------------------- structure


def test_every_file_parses_to_a_mapping() -> None:
    for path in (GATEWAY, AGENT, GATEWAY_LOCAL):
        assert isinstance(load(path), dict), path
    jobs = yaml.safe_load(PROMETHEUS_JOBS.read_text())
    assert isinstance(jobs, list) and jobs


def test_component_types_are_documented_collector_contrib_names(config: dict[str, Any]) -> None:
    for kind, known in KNOWN_COMPONENTS.items():
        for component_id in config.get(kind) or {}:
            assert component_type(component_id) in known, f"{kind}: unknown {component_id}"


def test_every_pipeline_component_is_defined_and_every_defined_one_used(
    config: dict[str, Any],
) -> None:
    service = config["service"]
    pipelines: dict[str, dict[str, list[str]]] = service["pipelines"]
    assert pipelines
    connectors = set(config.get("connectors") or {})
    used: dict[str, set[str]] = {kind: set() for kind in KNOWN_COMPONENTS}
    for pipeline_id, pipeline in pipelines.items():
        assert signal_of(pipeline_id) in {"traces", "metrics", "logs"}, pipeline_id
        assert pipeline.get("receivers"), f"{pipeline_id} has no receiver"
        assert pipeline.get("exporters"), f"{pipeline_id} has no exporter"
        for role in ("receivers", "processors", "exporters"):
            for component_id in pipeline.get(role) or []:
                if role != "processors" and component_id in connectors:
                    used["connectors"].add(component_id)
                    continue
                assert component_id in (config.get(role) or {}), (
                    f"{pipeline_id} uses undefined {role[:-1]} {component_id}"
                )
                used[role].add(component_id)
    for extension in service.get("extensions") or []:
        assert extension in (config.get("extensions") or {}), f"undefined extension {extension}"
        used["extensions"].add(extension)
    # The Collector refuses a config whose connector is not both an exporter and a receiver,
    # but accepts unused receivers, processors and extensions silently: none here either.
    # (gateway+local keeps otlphttp/sentry defined and unused on purpose: gateway-local.yaml.)
    for kind in ("receivers", "processors", "connectors", "extensions"):
        assert set(config.get(kind) or {}) == used[kind], f"unused {kind}"


def test_connectors_bridge_the_right_signals(config: dict[str, Any]) -> None:
    pipelines = config["service"]["pipelines"]
    for connector_id in config.get("connectors") or {}:
        consumes, produces = CONNECTOR_SIGNALS[component_type(connector_id)]
        as_exporter = [p for p, spec in pipelines.items() if connector_id in spec["exporters"]]
        as_receiver = [p for p, spec in pipelines.items() if connector_id in spec["receivers"]]
        assert as_exporter and as_receiver, f"{connector_id} must be exporter and receiver"
        assert {signal_of(p) for p in as_exporter} == {consumes}
        assert {signal_of(p) for p in as_receiver} == {produces}


def test_memory_limiter_comes_first_and_batch_last(config: dict[str, Any]) -> None:
    limiter = config["processors"]["memory_limiter"]
    assert duration_seconds(limiter["check_interval"]) <= 5
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"]
    for pipeline_id, pipeline in config["service"]["pipelines"].items():
        processors = pipeline.get("processors") or []
        assert processors and processors[0] == "memory_limiter", pipeline_id
        if "batch" in processors:
            assert processors[-1] == "batch", f"{pipeline_id}: batch regroups, keep it last"


def test_listeners_bind_all_interfaces_and_debug_endpoints_localhost(
    config: dict[str, Any],
) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    extensions = config["extensions"]
    assert extensions["health_check"]["endpoint"] == "0.0.0.0:13133"
    for debug in ("pprof", "zpages"):
        if debug in extensions:
            assert extensions[debug]["endpoint"].startswith("127.0.0.1:"), debug
    readers = config["service"]["telemetry"]["metrics"]["readers"]
    exporter = readers[0]["pull"]["exporter"]["prometheus"]
    assert (exporter["host"], exporter["port"]) == ("0.0.0.0", 8888)


# --------------------------------------------------------------------------- gateway


def test_tail_sampling_policies_are_complete(gateway: dict[str, Any]) -> None:
    tail = gateway["processors"]["tail_sampling"]
    names = [policy["name"] for policy in tail["policies"]]
    assert len(names) == len(set(names)), "policy names must be unique"
    for policy in tail["policies"]:
        assert set(policy) == {"name", "type", policy["type"]}, policy
        assert policy["type"] in TAIL_SAMPLING_POLICY_TYPES, policy["type"]
        assert isinstance(policy[policy["type"]], dict) and policy[policy["type"]]
    by_type = policies_by_type(gateway)
    # Every trace with an error.
    assert by_type["status_code"][0]["status_code"]["status_codes"] == ["ERROR"]
    # Every slow trace: the 4T Apdex bound (2 s) of docs/metrics.md.
    assert by_type["latency"][0]["latency"]["threshold_ms"] == 2000
    # Every trace the library marked (errors, critical routes).
    assert by_type["boolean_attribute"][0]["boolean_attribute"] == {
        "key": "telemetry.keep", "value": True,
    }
    # A share of the rest, strictly between nothing and everything.
    share = by_type["probabilistic"][0]["probabilistic"]["sampling_percentage"]
    assert 0 < share < 100
    # No drop or invert policy: nothing here can veto the error or latency policies.
    assert "drop" not in by_type
    for policy in tail["policies"]:
        assert not policy[policy["type"]].get("invert_match"), policy["name"]


def test_critical_route_policy_matches_the_library_and_k8s(gateway: dict[str, Any]) -> None:
    routes = policies_by_type(gateway)["string_attribute"][0]["string_attribute"]
    assert routes["key"] == "http.route"
    assert not routes.get("enabled_regex_matching"), "route templates match exactly"
    library_default = TelemetrySettings.model_fields["critical_routes"].get_default(
        call_default_factory=True
    )
    assert routes["values"] == library_default
    kustomization = yaml.safe_load(
        (ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml").read_text()
    )
    literals = next(
        generator["literals"]
        for generator in kustomization["configMapGenerator"]
        if generator["name"] == "telemetry-config"
    )
    configured = dict(literal.split("=", 1) for literal in literals)
    assert configured["TELEMETRY_CRITICAL_ROUTES"].split(",") == routes["values"]


def test_tail_sampling_holds_enough_traces_for_its_decision_wait(
    gateway: dict[str, Any],
) -> None:
    tail = gateway["processors"]["tail_sampling"]
    wait = duration_seconds(tail["decision_wait"])
    # Traces are evicted before their decision when num_traces < wait x new traces/s.
    assert tail["num_traces"] >= 2 * wait * tail["expected_new_traces_per_sec"]
    # The latency policy can only see a trace that ends within the wait.
    threshold = policies_by_type(gateway)["latency"][0]["latency"]["threshold_ms"] / 1000
    assert wait > threshold
    cache = tail["decision_cache"]
    assert cache["sampled_cache_size"] >= tail["num_traces"]


def test_spanmetrics_see_every_span_before_sampling(gateway: dict[str, Any]) -> None:
    pipelines = gateway["service"]["pipelines"]
    feeding = [p for p, spec in pipelines.items() if "spanmetrics" in spec["exporters"]]
    sampled = [
        p for p, spec in pipelines.items() if "tail_sampling" in (spec.get("processors") or [])
    ]
    assert len(feeding) == 1 and len(sampled) == 1
    assert "tail_sampling" not in pipelines[feeding[0]]["processors"]
    # Same receiver: the Collector fans its data out to both pipelines.
    assert pipelines[feeding[0]]["receivers"] == pipelines[sampled[0]]["receivers"] == ["otlp"]
    assert set(pipelines[sampled[0]]["exporters"]) == {"otlp/jaeger", "otlphttp/sentry"}


def test_spanmetrics_buckets_and_dimensions(gateway: dict[str, Any]) -> None:
    spanmetrics = gateway["connectors"]["spanmetrics"]
    buckets = [duration_seconds(b) for b in spanmetrics["histogram"]["explicit"]["buckets"]]
    assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets)
    # The Apdex bounds T and 4T (docs/metrics.md), as in the services' own histogram.
    assert 0.5 in buckets and 2.0 in buckets
    # Jaeger's Monitor tab reads traces_span_metrics_* in milliseconds.
    assert spanmetrics["namespace"] == "traces.span.metrics"
    assert spanmetrics["histogram"]["unit"] == "ms"
    dimensions = {d["name"] for d in spanmetrics["dimensions"]}
    assert "http.route" in dimensions
    assert dimensions & {"http.request.method", "http.method"}
    assert dimensions & {"http.response.status_code", "http.status_code"}
    # Exemplars only reach Prometheus in the OpenMetrics exposition.
    assert spanmetrics["exemplars"]["enabled"] is True
    assert gateway["exporters"]["prometheus"]["enable_open_metrics"] is True


def test_exporters_reach_jaeger_and_sentry_with_the_secret_from_the_environment(
    gateway: dict[str, Any],
) -> None:
    jaeger = gateway["exporters"]["otlp/jaeger"]
    assert jaeger["endpoint"] == "jaeger:4317"
    assert jaeger["tls"]["insecure"] is True
    sentry = gateway["exporters"]["otlphttp/sentry"]
    assert _ENV_REFERENCE.match(sentry["traces_endpoint"])
    headers = {name.lower(): value for name, value in sentry["headers"].items()}
    assert _ENV_REFERENCE.match(headers["x-sentry-auth"]), "the auth header is a secret"
    assert "SENTRY_AUTH_HEADER" in headers["x-sentry-auth"]
    for exporter in (jaeger, sentry):
        assert exporter["sending_queue"]["enabled"] is True
        assert exporter["retry_on_failure"]["enabled"] is True


def test_no_secret_is_written_into_any_collector_file() -> None:
    for path in COLLECTOR_DIR.iterdir():
        if path.suffix in {".yaml", ".yml"}:
            text = path.read_text()
            assert not re.search(r"sentry_key=[0-9a-f]{8,}", text), path.name
            assert not re.search(r"https?://[0-9a-f]{32}@", text), f"{path.name}: a DSN"


# --------------------------------------------------------------------------- agent


def test_agent_routes_whole_traces_to_the_gateways(agent: dict[str, Any]) -> None:
    loadbalancing = agent["exporters"]["loadbalancing"]
    assert loadbalancing["routing_key"] == "traceID"
    resolver = loadbalancing["resolver"]
    assert set(resolver) & {"dns", "k8s", "static"}, "a resolver is required"
    dns = resolver["dns"]
    assert dns["hostname"] == "otel-gateway-headless"
    assert dns["port"] == 4317  # the gateways' OTLP/gRPC receiver
    # The resolver fills the endpoint in; a fixed one would bypass the ring.
    otlp = loadbalancing["protocol"]["otlp"]
    assert "endpoint" not in otlp
    assert otlp["tls"]["insecure"] is True
    traces = agent["service"]["pipelines"]["traces"]
    assert traces["exporters"] == ["loadbalancing"]
    # Sampling belongs to the gateways, which see whole traces.
    assert "tail_sampling" not in (agent.get("processors") or {})


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose_service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]["otel-collector"]
    return service


def test_compose_collector_profile_mounts_the_configs_it_runs(
    compose_service: dict[str, Any],
) -> None:
    assert compose_service["profiles"] == ["collector"]
    assert compose_service["image"] == COLLECTOR_IMAGE
    mounts = {}
    for volume in compose_service["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro"
        assert (ROOT / source).is_file(), f"mounts missing {source}"
        mounts[target] = (ROOT / source).resolve()
    configs = [arg.split("=", 1)[1] for arg in compose_service["command"]]
    assert [mounts[c] for c in configs] == [GATEWAY.resolve(), GATEWAY_LOCAL.resolve()]
    for port in compose_service["ports"]:
        assert port.startswith("127.0.0.1:"), port
    published = {int(p.rsplit(":", 1)[1]) for p in compose_service["ports"]}
    assert {4317, 4318, 13133, 8888, 8889} <= published


def test_local_gateway_sends_to_jaeger_only() -> None:
    merged = merge(load(GATEWAY), load(GATEWAY_LOCAL))
    sampled = merged["service"]["pipelines"]["traces/sampled"]
    assert sampled["exporters"] == ["otlp/jaeger"]
    # Everything else is the production gateway, unchanged.
    assert sampled["processors"] == load(GATEWAY)["service"]["pipelines"]["traces/sampled"][
        "processors"
    ]


def test_prometheus_jobs_scrape_the_gateway_ports(gateway: dict[str, Any], tmp_path: Path) -> None:
    jobs = yaml.safe_load(PROMETHEUS_JOBS.read_text())
    targets = {
        job["job_name"]: target
        for job in jobs
        for static in job["static_configs"]
        for target in static["targets"]
    }
    telemetry_port = gateway["service"]["telemetry"]["metrics"]["readers"][0]["pull"][
        "exporter"
    ]["prometheus"]["port"]
    spanmetrics_port = gateway["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert targets == {
        "otel-gateway": f"otel-collector:{telemetry_port}",
        "otel-gateway-spanmetrics": f"otel-collector:{spanmetrics_port}",
    }
    existing = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert not {job["job_name"] for job in existing["scrape_configs"]} & set(targets)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- capacity


@pytest.mark.timeout(180)
def test_the_measured_span_figures_in_the_readme_still_hold() -> None:
    """deploy/README.md's capacity model quotes measure_spans.py; a library change that
    makes spans much bigger (or the demo much chattier) must update it."""
    result = subprocess.run(
        [sys.executable, str(MEASURE), "--requests", "150"],
        capture_output=True, text=True, timeout=170, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    readme = README.read_text()
    quoted_bytes = int(re.search(r"\| bytes per span \(measured\) \| (\d+) B", readme)[1])
    quoted_spans = float(re.search(r"\| spans per request \(measured\) \| ([\d.]+)", readme)[1])
    demo = measured["demo"]
    assert demo["request_traces"] >= 140
    assert abs(demo["export_request_bytes_per_span"] - quoted_bytes) <= 0.25 * quoted_bytes
    # SQLite here, PostgreSQL + Redis in the README: within one span a request.
    assert abs(demo["spans_per_trace_mean"] - quoted_spans) <= 1.0
    sdk = measured["sdk"]
    assert sdk["spans"] == 1000
    # Batching amortises the resource and scope: cheaper per span than one at a time.
    assert sdk["bytes_per_span_in_batches_of_512"] < sdk["bytes_per_span_alone_mean"]
