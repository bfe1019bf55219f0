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


# --------------------------------------------------------------------------- field types
#
# The Collector decodes each component's YAML into its Go config struct with mapstructure,
# strictly (confmap.strictlyTypedInput, stable since v0.108; otelcol-contrib 0.135.0 here):
# a YAML int where the struct has a string is "expected type 'string', got unconvertible
# type 'int'", an unknown key is "has invalid keys", and either stops the Collector at
# start (a crash-looping DaemonSet in deploy/k8s). The schema below mirrors the config
# structs of the components these files use, for the fields they use and their
# neighbours; exporter/loadbalancingexporter/config.go is the one that bit:
#
#   type DNSResolver struct {
#       Hostname string        `mapstructure:"hostname"`
#       Port     string        `mapstructure:"port"`
#       Interval time.Duration `mapstructure:"interval"`
#       Timeout  time.Duration `mapstructure:"timeout"`
#   }
#   type K8sSvcResolver struct { Service string; Ports []int32; Timeout time.Duration; ... }
#
# Kinds: "string", "int", "uint", "float", "bool", "duration" (a Go duration string:
# mapstructure would take a bare number too, as nanoseconds, which is never what a config
# means), ("list", kind), ("map", kind) and nested dicts (structs: unknown keys refused).

STR, INT, UINT, FLOAT, BOOL, DURATION = "string", "int", "uint", "float", "bool", "duration"
Kind = Any


def _list(kind: Kind) -> tuple[str, Kind]:
    return ("list", kind)


def _map(kind: Kind) -> tuple[str, Kind]:
    return ("map", kind)


_TLS = {
    "insecure": BOOL, "insecure_skip_verify": BOOL, "ca_file": STR, "cert_file": STR,
    "key_file": STR, "server_name_override": STR, "min_version": STR,
}
_QUEUE = {  # exporterhelper.QueueBatchConfig
    "enabled": BOOL, "num_consumers": INT, "queue_size": INT, "wait_for_result": BOOL,
    "block_on_overflow": BOOL, "sizer": STR, "storage": STR,
}
_RETRY = {  # configretry.BackOffConfig
    "enabled": BOOL, "initial_interval": DURATION, "randomization_factor": FLOAT,
    "multiplier": FLOAT, "max_interval": DURATION, "max_elapsed_time": DURATION,
}
_EXPORTER_HELPER = {"timeout": DURATION, "sending_queue": _QUEUE, "retry_on_failure": _RETRY}
_OTLP_EXPORTER = {  # exporter/otlpexporter: configgrpc.ClientConfig + exporterhelper
    "endpoint": STR, "compression": STR, "tls": _TLS, "headers": _map(STR),
    "balancer_name": STR, "authority": STR, "wait_for_ready": BOOL, **_EXPORTER_HELPER,
}
_OTLPHTTP_EXPORTER = {  # exporter/otlphttpexporter: confighttp.ClientConfig + exporterhelper
    "endpoint": STR, "traces_endpoint": STR, "metrics_endpoint": STR, "logs_endpoint": STR,
    "headers": _map(STR), "compression": STR, "encoding": STR, "tls": _TLS,
    **_EXPORTER_HELPER,
}
_POLICY = {  # processor/tailsamplingprocessor PolicyCfg (sharedPolicyCfg + its blocks)
    "name": STR, "type": STR,
    "always_sample": {},
    "latency": {"threshold_ms": INT, "upper_threshold_ms": INT},
    "status_code": {"status_codes": _list(STR)},
    "string_attribute": {
        "key": STR, "values": _list(STR), "enabled_regex_matching": BOOL,
        "cache_max_size": INT, "invert_match": BOOL,
    },
    "boolean_attribute": {"key": STR, "value": BOOL, "invert_match": BOOL},
    "numeric_attribute": {"key": STR, "min_value": INT, "max_value": INT, "invert_match": BOOL},
    "probabilistic": {"sampling_percentage": FLOAT, "hash_salt": STR},
    "rate_limiting": {"spans_per_second": INT},
    "span_count": {"min_spans": INT, "max_spans": INT},
}

COMPONENT_SCHEMAS: dict[str, dict[str, Kind]] = {
    "receivers/otlp": {
        "protocols": {
            "grpc": {"endpoint": STR, "max_recv_msg_size_mib": INT, "tls": _TLS},
            "http": {"endpoint": STR, "tls": _TLS, "traces_url_path": STR},
        },
    },
    "processors/memory_limiter": {
        "check_interval": DURATION, "limit_mib": UINT, "spike_limit_mib": UINT,
        "limit_percentage": UINT, "spike_limit_percentage": UINT,
    },
    "processors/batch": {
        "timeout": DURATION, "send_batch_size": UINT, "send_batch_max_size": UINT,
        "metadata_keys": _list(STR), "metadata_cardinality_limit": UINT,
    },
    "processors/tail_sampling": {
        "decision_wait": DURATION, "num_traces": UINT, "expected_new_traces_per_sec": UINT,
        "decision_cache": {"sampled_cache_size": INT, "non_sampled_cache_size": INT},
        "policies": _list(_POLICY),
    },
    "connectors/spanmetrics": {
        "namespace": STR, "aggregation_temporality": STR, "dimensions_cache_size": INT,
        "metrics_flush_interval": DURATION, "metrics_expiration": DURATION,
        "histogram": {
            "unit": STR, "disable": BOOL,
            "explicit": {"buckets": _list(DURATION)},
            "exponential": {"max_size": INT},
        },
        "dimensions": _list({"name": STR, "default": STR}),
        "exemplars": {"enabled": BOOL, "max_per_data_point": INT},
        "exclude_dimensions": _list(STR),
        "resource_metrics_key_attributes": _list(STR),
    },
    "exporters/otlp": _OTLP_EXPORTER,
    "exporters/otlphttp": _OTLPHTTP_EXPORTER,
    "exporters/debug": {"verbosity": STR, "sampling_initial": INT, "sampling_thereafter": INT},
    "exporters/prometheus": {
        "endpoint": STR, "namespace": STR, "const_labels": _map(STR), "send_timestamps": BOOL,
        "metric_expiration": DURATION, "enable_open_metrics": BOOL,
        "add_metric_suffixes": BOOL, "resource_to_telemetry_conversion": {"enabled": BOOL},
    },
    "exporters/loadbalancing": {
        "routing_key": STR, "routing_attributes": _list(STR),
        # The resolver fills the endpoint in; every other otlp exporter option applies.
        "protocol": {"otlp": _OTLP_EXPORTER},
        "resolver": {
            "static": {"hostnames": _list(STR)},
            "dns": {"hostname": STR, "port": STR, "interval": DURATION, "timeout": DURATION},
            "k8s": {
                "service": STR, "ports": _list(INT), "timeout": DURATION,
                "return_hostnames": BOOL,
            },
        },
        **_EXPORTER_HELPER,
    },
    "extensions/health_check": {"endpoint": STR, "path": STR},
    "extensions/pprof": {
        "endpoint": STR, "block_profile_fraction": INT, "mutex_profile_fraction": INT,
        "save_to_file": STR,
    },
    "extensions/zpages": {"endpoint": STR},
}

_PIPELINE = {"receivers": _list(STR), "processors": _list(STR), "exporters": _list(STR)}
SERVICE_SCHEMA: dict[str, Kind] = {
    "extensions": _list(STR),
    "pipelines": _map(_PIPELINE),
    "telemetry": {
        "resource": _map(STR),
        "metrics": {
            "level": STR,
            "readers": _list({
                "pull": {"exporter": {"prometheus": {
                    "host": STR, "port": INT, "without_scope_info": BOOL,
                    "without_type_suffix": BOOL, "without_units": BOOL,
                }}},
            }),
        },
        "logs": {"level": STR, "encoding": STR, "development": BOOL},
    },
}

_GO_DURATION = re.compile(r"((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+|0")


def decode_errors(value: Any, kind: Kind, path: str) -> list[str]:
    """What the Collector's strict decoding would say about ``value`` for a field of
    ``kind``, in its own words; empty when it decodes."""
    def mismatch(expected: str) -> list[str]:
        got = "int" if isinstance(value, int) else type(value).__name__
        if isinstance(value, bool):
            got = "bool"
        return [f"'{path}' expected type '{expected}', got unconvertible type '{got}', "
                f"value: '{value}'"]

    if isinstance(kind, dict):
        if value is None:
            return []  # an empty block: the component's defaults
        if not isinstance(value, dict):
            return [f"'{path}' expected a map, got '{type(value).__name__}'"]
        errors = []
        unknown = sorted(set(value) - set(kind))
        if unknown:
            errors.append(f"'{path}' has invalid keys: {', '.join(unknown)}")
        for key in set(value) & set(kind):
            errors += decode_errors(value[key], kind[key], f"{path}.{key}" if path else key)
        return errors
    if isinstance(kind, tuple):
        container, item = kind
        if container == "list":
            if not isinstance(value, list):
                got = type(value).__name__
                return [f"'{path}' source data must be an array or slice, got {got}"]
            return [e for i, v in enumerate(value) for e in decode_errors(v, item, f"{path}[{i}]")]
        if not isinstance(value, dict):
            return [f"'{path}' expected a map, got '{type(value).__name__}'"]
        return [e for k, v in value.items() for e in decode_errors(v, item, f"{path}[{k}]")]
    if kind == STR:
        return [] if isinstance(value, str) else mismatch("string")
    if kind == BOOL:
        return [] if isinstance(value, bool) else mismatch("bool")
    if kind in (INT, UINT):
        if isinstance(value, bool) or not isinstance(value, int):
            return mismatch("int" if kind == INT else "uint")
        return [] if kind == INT or value >= 0 else [f"'{path}' cannot parse {value} as uint"]
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return mismatch("float64")
        return []
    if kind == DURATION:
        if isinstance(value, str) and _GO_DURATION.fullmatch(value):
            return []
        if isinstance(value, int | float) and not isinstance(value, bool):
            return [f"'{path}' is a bare number: the Collector reads it as {value} ns"]
        return [f"'{path}' time: invalid duration {value!r}"]
    raise AssertionError(f"unknown kind {kind!r}")


def config_decode_errors(config: dict[str, Any]) -> list[str]:
    errors = []
    for section in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for component_id, body in (config.get(section) or {}).items():
            schema = COMPONENT_SCHEMAS.get(f"{section}/{component_type(component_id)}")
            assert schema is not None, f"no schema for {section}/{component_id}: add its fields"
            errors += decode_errors(body, schema, f"{section}::{component_id}")
    errors += decode_errors(config.get("service"), SERVICE_SCHEMA, "service")
    return errors


def test_every_field_decodes_to_the_collectors_go_type(config: dict[str, Any]) -> None:
    assert config_decode_errors(config) == []


def test_the_k8s_agent_config_decodes_too() -> None:
    """The ConfigMap copies in deploy/k8s are what the DaemonSet and the gateways load."""
    k8s_dir = ROOT / "deploy" / "k8s" / "base" / "otel-collector"
    for name in ("agent.yaml", "gateway.yaml"):
        assert config_decode_errors(load(k8s_dir / name)) == [], name


def test_the_type_check_catches_what_the_collector_refuses(agent: dict[str, Any]) -> None:
    """The schema is not a rubber stamp: the agent as it was (an int port), a duration
    written as a number, an unknown key and a quoted bool all fail like the Collector."""
    broken = copy.deepcopy(agent)
    broken["exporters"]["loadbalancing"]["resolver"]["dns"]["port"] = 4317
    assert config_decode_errors(broken) == [
        "'exporters::loadbalancing.resolver.dns.port' expected type 'string', got "
        "unconvertible type 'int', value: '4317'"
    ]
    broken = copy.deepcopy(agent)
    broken["exporters"]["loadbalancing"]["resolver"]["dns"]["interval"] = 5
    broken["processors"]["batch"]["send_batch_sise"] = 1024
    broken["exporters"]["loadbalancing"]["protocol"]["otlp"]["tls"]["insecure"] = "true"
    errors = config_decode_errors(broken)
    assert len(errors) == 3, errors
    assert any("bare number" in error for error in errors)
    assert any("invalid keys: send_batch_sise" in error for error in errors)
    assert any("expected type 'bool'" in error for error in errors)


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
    # The gateways' OTLP/gRPC receiver, as the string DNSResolver.Port is (see below).
    assert dns["port"] == "4317"
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
