"""Offline checks of deploy/k8s (Kustomize base + production overlay); no cluster needed.

Both kustomizations are rendered twice when kubectl is installed: by `kubectl kustomize`
(the real renderer, bundled in kubectl) and by a small loader here (resources,
configMapGenerator, namespace, labels, images, replicas, strategic-merge patches by
container name), which also runs where kubectl is absent. Every built-in object is
validated against the Kubernetes OpenAPI schemas shipped by `kubernetes-validate`
(PyPI, offline); the Prometheus Operator objects are checked structurally. Then the
objects are cross-checked: selectors select, references resolve, the Collector configs and
the manifests agree, and the generated objects equal their sources.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
COLLECTOR_DIR = ROOT / "deploy" / "otel-collector"
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "telemetry"

Obj = dict[str, Any]

# Fields of the Prometheus Operator CRDs (monitoring.coreos.com/v1, from the operator's
# CRD schemas, example/prometheus-operator-crd/) that these manifests may use.
SERVICE_MONITOR_SPEC_FIELDS = {
    "endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels",
    "podTargetLabels", "sampleLimit", "scrapeProtocols", "attachMetadata", "scrapeClass",
}
SERVICE_MONITOR_ENDPOINT_FIELDS = {
    "port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
    "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig",
}
SCRAPE_PROTOCOLS = {
    "PrometheusProto", "OpenMetricsText0.0.1", "OpenMetricsText1.0.0",
    "PrometheusText0.0.4", "PrometheusText1.0.0",
}
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generate()


def load_all(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --------------------------------------------------------------------------- renderers


def strategic_merge(target: Any, patch: Any) -> Any:
    """Enough of Kubernetes' strategic merge for these patches: maps merge, lists of maps
    with a `name` merge item by item, other lists are replaced."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(target)
        for key, value in patch.items():
            merged[key] = strategic_merge(target[key], value) if key in target else value
        return merged
    if (
        isinstance(target, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in target + patch)
    ):
        merged_list = copy.deepcopy(target)
        for item in patch:
            names = [existing["name"] for existing in merged_list]
            if item["name"] in names:
                index = names.index(item["name"])
                merged_list[index] = strategic_merge(merged_list[index], item)
            else:
                merged_list.append(item)
        return merged_list
    return copy.deepcopy(patch)


def _generated_configmap(directory: Path, generator: Obj) -> Obj:
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")
        path = directory / source
        assert path.is_file(), f"{directory}: configMapGenerator file {source} missing"
        data[key or path.name] = path.read_text()
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": generator["name"]}, "data": data}


def python_render(directory: Path) -> list[Obj]:
    """The test-side loader: every referenced file must exist and parse."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        assert path.exists(), f"{directory}: resource {resource} missing"
        objects.extend(python_render(path) if path.is_dir() else load_all(path))
    for generator in kustomization.get("configMapGenerator", []):
        made = _generated_configmap(directory, generator)
        if generator.get("behavior") == "merge":
            existing = next(o for o in objects if o["kind"] == "ConfigMap"
                            and o["metadata"]["name"] == generator["name"])
            existing["data"].update(made["data"])
        else:
            objects.append(made)
    for patch in kustomization.get("patches", []):
        path = directory / patch["path"]
        assert path.is_file(), f"{directory}: patch {patch['path']} missing"
        for document in load_all(path):
            index = next(
                i for i, o in enumerate(objects)
                if (o["kind"], o["metadata"]["name"])
                == (document["kind"], document["metadata"]["name"])
            )
            objects[index] = strategic_merge(objects[index], document)
    for replicas in kustomization.get("replicas", []):
        target = next(o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}
                      and o["metadata"]["name"] == replicas["name"])
        target["spec"]["replicas"] = replicas["count"]
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                repository, _, tag = container["image"].rpartition(":")
                if repository == image["name"]:
                    container["image"] = (
                        f"{image.get('newName', repository)}:{image.get('newTag', tag)}"
                    )
    for label_set in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


def kubectl_render(directory: Path) -> list[Obj]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: rendered by the Python loader only")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


RENDERERS: dict[str, Callable[[Path], list[Obj]]] = {
    "python": python_render,
    "kubectl": kubectl_render,
}
_cache: dict[tuple[str, str], list[Obj]] = {}


def rendered(renderer: str, directory: Path) -> list[Obj]:
    key = (renderer, str(directory))
    if key not in _cache:
        _cache[key] = RENDERERS[renderer](directory)
    return copy.deepcopy(_cache[key])


@pytest.fixture(params=[(r, d) for r in RENDERERS for d in ("base", "production")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    renderer, name = request.param
    return rendered(renderer, BASE if name == "base" else PRODUCTION)


@pytest.fixture(params=list(RENDERERS))
def production(request: pytest.FixtureRequest) -> list[Obj]:
    return rendered(request.param, PRODUCTION)


# --------------------------------------------------------------------------- helpers


def _containers(obj: Obj) -> list[Obj]:
    template = obj.get("spec", {}).get("template", {}).get("spec", {})
    containers: list[Obj] = template.get("containers", [])
    return containers


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def configmap(objects: list[Obj], name: str) -> Obj:
    """A ConfigMap by its generator name; kustomize appends a content hash."""
    matches = [
        o for o in objects if o["kind"] == "ConfigMap"
        and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    assert len(matches) == 1, f"ConfigMap {name}: {len(matches)} found"
    return matches[0]


def workload(objects: list[Obj], name: str) -> Obj:
    found = [o for o in objects if o["kind"] in {"Deployment", "DaemonSet"}
             and o["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def container(objects: list[Obj], name: str) -> Obj:
    return _containers(workload(objects, name))[0]


def env_of(container_spec: Obj) -> dict[str, Obj]:
    return {entry["name"]: entry for entry in container_spec.get("env", [])}


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0, "MiB": 1.0, "GiB": 1024.0}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i(?:B)?)", quantity)
    assert match, quantity
    return float(match[1]) * units[match[2]]


def collector_config(name: str) -> Obj:
    config: Obj = yaml.safe_load((COLLECTOR_DIR / name).read_text())
    return config


# --------------------------------------------------------------------------- rendering


def test_both_renderers_produce_the_same_objects() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    for directory in (BASE, PRODUCTION):
        ours = {(o["kind"], o["metadata"]["name"]) for o in rendered("python", directory)}
        theirs = set()
        for obj in rendered("kubectl", directory):
            name = obj["metadata"]["name"]
            unhashed = re.sub(r"-[a-z0-9]{10}$", "", name)
            # configMapGenerator names carry a content hash in kustomize's output.
            if obj["kind"] == "ConfigMap" and (obj["kind"], name) not in ours:
                name = unhashed
            theirs.add((obj["kind"], name))
        assert ours == theirs, directory


def test_built_in_objects_validate_against_the_kubernetes_schemas(objects: list[Obj]) -> None:
    kinds = set()
    for obj in objects:
        kinds.add(obj["kind"])
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error}")
    assert {"Deployment", "DaemonSet", "Service", "ConfigMap", "ServiceMonitor",
            "PrometheusRule"} <= kinds


def test_everything_lives_in_the_namespace_and_no_secret_is_rendered(
    objects: list[Obj],
) -> None:
    for obj in objects:
        assert obj["kind"] != "Secret", "secrets are never part of the kustomization"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_every_referenced_configmap_and_secret_exists(objects: list[Obj]) -> None:
    examples = {
        s["metadata"]["name"]: set(s["stringData"])
        for s in load_all(BASE / "secret.example.yaml")
    }
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
        for container_spec in spec.get("containers", []):
            for source in container_spec.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for entry in container_spec.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples.get(ref["name"], set()), (
                        f"{ref['name']}/{ref['key']} is not documented in secret.example.yaml"
                    )


def test_containers_are_pinned_bounded_and_locked_down(objects: list[Obj]) -> None:
    for obj in objects:
        for container_spec in _containers(obj):
            name = f"{obj['metadata']['name']}/{container_spec['name']}"
            image = container_spec["image"]
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest", name
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}"
            resources = container_spec["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name
            security = container_spec["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert obj["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
            assert "livenessProbe" in container_spec and "readinessProbe" in container_spec


def test_services_select_pods_and_name_their_ports(objects: list[Obj]) -> None:
    workloads = [o for o in objects if o["kind"] in {"Deployment", "DaemonSet"}]
    for service in by_kind(objects, "Service").values():
        selector = service["spec"]["selector"]
        selected = [
            w for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        port_names = {p["name"] for w in selected for c in _containers(w) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


# --------------------------------------------------------------------------- the services


def test_demo_services_probe_health_and_take_the_dsn_from_a_secret(objects: list[Obj]) -> None:
    for name in ("api", "model-provider"):
        spec = container(objects, name)
        assert spec["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert spec["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        dsn = env_of(spec)["SENTRY_DSN"]
        assert "value" not in dsn
        assert dsn["valueFrom"]["secretKeyRef"]["key"] == "SENTRY_DSN"
        assert [s["configMapRef"]["name"] for s in spec["envFrom"]] == [
            configmap(objects, "telemetry-config")["metadata"]["name"]
        ]


def test_telemetry_config_sends_every_span_to_the_node_agent(objects: list[Obj]) -> None:
    data = configmap(objects, "telemetry-config")["data"]
    assert data["TELEMETRY_EXPORT"] == "collector"
    assert data["TELEMETRY_SENTRY_TRACES"] == "off"
    assert "SENTRY_DSN" not in data, "the DSN belongs in the Secret"
    host, port = data["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://").split(":")
    agent = by_kind(objects, "Service")[host]
    assert agent["spec"]["internalTrafficPolicy"] == "Local"
    assert int(port) in {p["port"] for p in agent["spec"]["ports"]}
    assert data["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf" and port == "4318"


# --------------------------------------------------------------------------- collector tier


def test_collector_configmaps_are_the_collector_configs(objects: list[Obj]) -> None:
    for generator_name, file_name, workload_name in (
        ("otel-agent-config", "agent.yaml", "otel-agent"),
        ("otel-gateway-config", "gateway.yaml", "otel-gateway"),
    ):
        data = configmap(objects, generator_name)["data"]
        assert data == {file_name: (COLLECTOR_DIR / file_name).read_text()}
        spec = container(objects, workload_name)
        assert spec["image"].startswith("otel/opentelemetry-collector-contrib:")
        mount = spec["volumeMounts"][0]["mountPath"]
        assert spec["args"] == [f"--config={mount}/{file_name}"]


def test_agents_resolve_the_gateways_through_the_headless_service(objects: list[Obj]) -> None:
    dns = collector_config("agent.yaml")["exporters"]["loadbalancing"]["resolver"]["dns"]
    headless = by_kind(objects, "Service")[dns["hostname"]]
    assert headless["spec"]["clusterIP"] == "None"
    # The resolver's port is a string in the Collector's config (test_deploy_collector.py),
    # the Service's an int.
    assert int(dns["port"]) in {p["port"] for p in headless["spec"]["ports"]}
    assert headless["spec"]["selector"] == workload(objects, "otel-gateway")["spec"]["selector"][
        "matchLabels"
    ]
    assert workload(objects, "otel-agent")["kind"] == "DaemonSet"


def test_collector_memory_limits_fit_their_memory_limiters(objects: list[Obj]) -> None:
    for workload_name, file_name in (("otel-agent", "agent.yaml"),
                                     ("otel-gateway", "gateway.yaml")):
        limiter = collector_config(file_name)["processors"]["memory_limiter"]
        spec = container(objects, workload_name)
        limit = mebibytes(spec["resources"]["limits"]["memory"])
        gomemlimit = mebibytes(env_of(spec)["GOMEMLIMIT"]["value"])
        # The limiter must act before the kernel's OOM killer, with room for the runtime.
        assert limiter["limit_mib"] <= 0.85 * limit, workload_name
        assert limiter["limit_mib"] - limiter["spike_limit_mib"] < gomemlimit <= limit


def test_gateway_gets_every_environment_variable_its_configs_reference(
    objects: list[Obj],
) -> None:
    for workload_name, text in (
        ("otel-gateway", (COLLECTOR_DIR / "gateway.yaml").read_text()),
        ("jaeger", (BASE / "jaeger" / "config.yaml").read_text()),
    ):
        referenced = set(re.findall(r"\$\{env:([A-Z_][A-Z0-9_]*)\}", text))
        assert referenced, workload_name
        spec = container(objects, workload_name)
        provided = set(env_of(spec))
        for source in spec.get("envFrom", []):
            name = source["configMapRef"]["name"]
            provided |= set(next(o for o in objects if o["kind"] == "ConfigMap"
                                 and o["metadata"]["name"] == name)["data"])
        assert referenced <= provided, f"{workload_name}: {referenced - provided} unset"
    # The Sentry auth header is a secret: from a Secret, never a literal.
    sentry = env_of(container(objects, "otel-gateway"))["SENTRY_AUTH_HEADER"]
    assert "value" not in sentry and sentry["valueFrom"]["secretKeyRef"]


def test_gateway_exports_to_the_jaeger_service(objects: list[Obj]) -> None:
    endpoint = collector_config("gateway.yaml")["exporters"]["otlp/jaeger"]["endpoint"]
    host, port = endpoint.split(":")
    jaeger = by_kind(objects, "Service")[host]
    assert int(port) in {p["port"] for p in jaeger["spec"]["ports"]}
    config = yaml.safe_load(configmap(objects, "jaeger-config")["data"]["config.yaml"])
    backend = config["extensions"]["jaeger_storage"]["backends"][
        config["extensions"]["jaeger_query"]["storage"]["traces"]
    ]
    assert "opensearch" in backend, "Jaeger on a scalable storage backend"
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] in (
        config["extensions"]["jaeger_storage"]["backends"]
    )
    # Behind the gateways Jaeger sees only sampled traces: no spanmetrics of its own.
    assert "spanmetrics" not in (config.get("connectors") or {})


# --------------------------------------------------------------------------- operator CRDs


def test_service_monitors_select_services_and_ports(objects: list[Obj]) -> None:
    services = by_kind(objects, "Service")
    monitors = by_kind(objects, "ServiceMonitor")
    assert set(monitors) == {"api", "model-provider", "otel-collector"}
    for name, monitor in monitors.items():
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) <= SERVICE_MONITOR_SPEC_FIELDS, name
        assert set(spec.get("scrapeProtocols", [])) <= SCRAPE_PROTOCOLS
        selected = [
            s for s in services.values()
            if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert selected, f"ServiceMonitor {name} selects no Service"
        ports = {p["name"] for s in selected for p in s["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS, name
            assert endpoint["port"] in ports, (name, endpoint["port"])
        if name in {"api", "model-provider"}:
            # The app's own `service` label must survive the operator's target labels.
            assert all(e["honorLabels"] is True for e in spec["endpoints"])
            assert spec["scrapeProtocols"][0].startswith("OpenMetrics")
            # Job = Service name, as alerts.yml's TargetDown expects (api|model-provider).
            assert "jobLabel" not in spec and [s["metadata"]["name"] for s in selected] == [name]
    gateway = collector_config("gateway.yaml")
    telemetry_port = gateway["service"]["telemetry"]["metrics"]["readers"][0]["pull"][
        "exporter"]["prometheus"]["port"]
    spanmetrics_port = int(gateway["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1])
    headless = services["otel-gateway-headless"]
    by_name = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    assert (by_name["metrics"], by_name["spanmetrics"]) == (telemetry_port, spanmetrics_port)


def test_prometheus_rules_are_well_formed(objects: list[Obj]) -> None:
    rules = by_kind(objects, "PrometheusRule")
    assert rules
    for name, rule in rules.items():
        assert generate.PROMETHEUS_SELECTOR_LABELS.items() <= rule["metadata"]["labels"].items()
        for group in rule["spec"]["groups"]:
            assert group["name"] and group["rules"], name
            for entry in group["rules"]:
                assert set(entry) <= RULE_FIELDS, entry
                assert ("record" in entry) != ("alert" in entry), entry
                assert entry["expr"], entry


# --------------------------------------------------------------------------- generated


def test_generated_files_are_up_to_date() -> None:
    assert generate.stale() == [], "run: python deploy/k8s/generate.py"


def test_prometheus_rule_groups_equal_the_rule_files() -> None:
    documents = load_all(generate.RULES_OUTPUT)
    sources = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    assert len(documents) == len(sources) >= 2
    for document in documents:
        source = ROOT / document["metadata"]["annotations"]["telemetry/source"]
        assert document["kind"] == "PrometheusRule"
        assert document["spec"]["groups"] == yaml.safe_load(source.read_text())["groups"]
    assert {ROOT / d["metadata"]["annotations"]["telemetry/source"] for d in documents} == set(
        sources
    )


def test_dashboard_configmaps_hold_the_dashboards_verbatim() -> None:
    documents = load_all(generate.DASHBOARDS_OUTPUT)
    sources = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    assert len(documents) == len(sources) >= 1
    for document, source in zip(documents, sources, strict=True):
        assert document["metadata"]["labels"] == {"grafana_dashboard": "1"}
        assert document["data"] == {source.name: source.read_text()}
        assert json.loads(document["data"][source.name]) == json.loads(source.read_text())
        # kubectl apply (client side) keeps a copy in an annotation capped at 256 KiB.
        assert len(yaml.safe_dump(document)) < 256 * 1024, source.name


# --------------------------------------------------------------------------- production


def test_production_overlay(production: list[Obj]) -> None:
    data = configmap(production, "telemetry-config")["data"]
    assert data["ENVIRONMENT"] == "production"
    # The base's other settings survive the merge.
    assert data["TELEMETRY_EXPORT"] == "collector"
    hpa = by_kind(production, "HorizontalPodAutoscaler")["api"]
    target = hpa["spec"]["scaleTargetRef"]
    assert workload(production, target["name"])["kind"] == target["kind"] == "Deployment"
    assert hpa["spec"]["minReplicas"] <= workload(production, "api")["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert workload(production, "otel-gateway")["spec"]["replicas"] >= 3
    for name in ("api", "otel-gateway"):
        assert by_kind(production, "PodDisruptionBudget")[name]["spec"]["maxUnavailable"] == 1
    api = container(production, "api")
    assert api["image"] == "registry.example.com/telemetry/telemetry-demo:0.1.0"
    base_api = container(rendered("python", BASE), "api")
    assert mebibytes(api["resources"]["limits"]["memory"]) > mebibytes(
        base_api["resources"]["limits"]["memory"]
    )
    # Probes and secrets come through the patches untouched.
    assert api["readinessProbe"] == base_api["readinessProbe"]
    assert env_of(api)["SENTRY_DSN"] == env_of(base_api)["SENTRY_DSN"]
