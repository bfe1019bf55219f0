"""Offline checks of docker-compose.yml, .env.example, deploy/Dockerfile and the Bugsink
bootstrap: no Docker engine is needed (none is available in CI).

The compose file is validated against the Compose specification with check-jsonschema,
then walked for what the schema cannot know: files it mounts exist, dependencies point at
defined services with health checks, images are pinned, ports stay on 127.0.0.1, every
variable is documented and no secret is committed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path
from types import ModuleType
from typing import Any

import bugsink
import pytest
import yaml
from django.http.request import validate_host

from tests.support.bugsink import Bugsink

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BOOTSTRAP = ROOT / "deploy" / "bugsink" / "bootstrap.py"
ENTRYPOINT = ROOT / "deploy" / "bugsink" / "sentry-env-entrypoint.sh"
# Bugsink's own settings module of its Docker image: the image copies this template to
# /app/bugsink_conf.py (Bugsink's Dockerfile), the PyPI package of the same version ships it.
BUGSINK_DOCKER_SETTINGS = Path(bugsink.__file__).parent / "conf_templates" / "docker.py.template"

# Variables whose values are secrets: .env.example must leave them empty and the compose
# file must refuse to start without them (`${VAR:?...}`), never fall back to a default.
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "BUGSINK_SECRET_KEY",
    "BUGSINK_ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` is
# an escaped dollar and not a variable.
_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation, enough for this file: defaults apply when the variable is
    unset (or empty, for the `:` forms); required variables get a placeholder."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        # The `:` forms treat an empty value as unset.
        missing = not value if op in (":-", ":?") else value is None
        if not missing:
            return value or ""
        if op in (":-", "-"):
            return arg or ""
        if op in (":?", "?"):
            return f"<required {name}>"
        return ""

    return _VARIABLE.sub(replace, text)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    """The compose document as `docker compose config` would see it with the defaults:
    interpolated with no .env, YAML anchors and merge keys resolved."""
    document: dict[str, Any] = yaml.safe_load(interpolate(compose_text, {}))
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_service_of_the_issue(services: dict[str, dict[str, Any]]) -> None:
    expected = {
        "api", "model-provider", "loadgen", "postgres", "redis", "jaeger", "prometheus",
        "alertmanager", "grafana", "bugsink", "bugsink-bootstrap",
    }
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"
    assert services["loadgen"]["profiles"] == ["load"]


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(volume["source"])
            continue
        source = volume.split(":", 1)[0]
        if source.startswith((".", "/", "~")):
            sources.append(source)
    return sources


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    missing = [
        f"{name}: {source}"
        for name, service in services.items()
        for source in _bind_sources(service)
        if not (ROOT / source).exists()
    ]
    assert not missing, f"compose mounts paths that do not exist: {missing}"


def test_named_volumes_and_secrets_are_declared_and_secret_files_exist(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    declared_secrets = compose.get("secrets") or {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        for secret in service.get("secrets", []):
            secret_name = secret["source"] if isinstance(secret, dict) else secret
            assert secret_name in declared_secrets, f"{name} uses undeclared secret {secret_name}"
    for name, secret in declared_secrets.items():
        assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} missing"


def test_build_context_and_dockerfile_exist(services: dict[str, dict[str, Any]]) -> None:
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert {"api", "model-provider", "loadgen"} <= set(built)
    for name, build in built.items():
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_every_dependency_is_a_defined_service_that_can_satisfy_its_condition(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on undefined {dependency}"
            condition = spec["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dependency}'s health check"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} must be a one-shot"
            else:
                pytest.fail(f"{name} -> {dependency}: condition {condition!r} waits for nothing")


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"loadgen", "bugsink-bootstrap"}
    for name, service in services.items():
        if name not in one_shots:
            assert "healthcheck" in service, f"{name} has no health check"


def test_api_waits_for_its_dependencies_and_the_bugsink_bootstrap(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]["depends_on"]
    assert api["bugsink-bootstrap"]["condition"] == "service_completed_successfully"
    for dependency in ("postgres", "redis", "model-provider", "jaeger"):
        assert api[dependency]["condition"] == "service_healthy"
    # The DSN reaches the apps through the bootstrap volume, read-only for them.
    for name in ("api", "model-provider"):
        assert "bootstrap:/bootstrap:ro" in services[name]["volumes"]
    assert "bootstrap:/bootstrap" in services["bugsink-bootstrap"]["volumes"]


def test_every_image_tag_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        reference = image.split("@", 1)[0]
        repository, _, tag = reference.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} uses latest"
        # A bare major ("2") floats as much as latest does.
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?([.-][\w.]+)?", tag), f"{name}: {image!r}"


def test_dockerfile_base_images_are_pinned() -> None:
    text = DOCKERFILE.read_text()
    arguments = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    stages = set(re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.MULTILINE))
    images = [
        re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], image)
        for image in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    ]
    assert images
    for image in images:
        if image in stages:
            continue
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest", image
        assert re.match(r"v?\d+\.\d+\.\d+", tag), f"{image}: pin the full version"
    # The image installs from the committed lock, not from whatever PyPI has today.
    assert "uv sync --frozen" in text
    # COPY from the build context (not --from another stage or image): the sources exist.
    for line in re.findall(r"^COPY (.+)$", text, flags=re.MULTILINE):
        words = line.split()
        if any(word.startswith("--from=") for word in words):
            continue
        for path in [word for word in words if not word.startswith("--")][:-1]:
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"


def test_every_published_port_binds_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name} uses the host network"
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert published >= 8


def test_every_variable_is_documented_in_env_example(compose_text: str) -> None:
    documented = set(_env_example())
    used = {match.group("name") for match in _VARIABLE.finditer(compose_text)}
    assert used, "no variables found: the pattern is broken"
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"


def test_no_secret_is_committed(compose_text: str) -> None:
    example = _env_example()
    for name in SECRET_VARIABLES:
        assert example.get(name, None) == "", f".env.example must leave {name} empty"
        forms = {
            m.group("op") for m in _VARIABLE.finditer(compose_text) if m.group("name") == name
        }
        assert forms == {":?"}, f"{name} must be required (${{{name}:?...}}), not defaulted"
    # Alertmanager reads its receiver secrets from files, never inline.
    alertmanager = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text()
    assert "api_url_file:" in alertmanager and "routing_key_file:" in alertmanager
    assert not re.search(r"^\s*(api_url|routing_key|service_key):", alertmanager, re.M)


def test_env_example_defaults_match_the_compose_defaults(compose_text: str) -> None:
    """A default changed in one place only would make `cp .env.example .env` change the
    stack: both must describe the same one."""
    example = _env_example()
    for match in _VARIABLE.finditer(compose_text):
        if match.group("op") == ":-":
            name, default = match.group("name"), match.group("arg")
            assert example[name] == default, (
                f"{name}: compose {default!r}, .env.example {example[name]!r}"
            )


def test_jaeger_config_enables_otlp_and_the_monitor_tab(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "jaeger" / "config.yaml").read_text())
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    query = config["extensions"]["jaeger_query"]["storage"]
    backend = config["extensions"]["jaeger_storage"]["metric_backends"][query["metrics"]]
    assert backend["prometheus"]["endpoint"] == "http://prometheus:9090"
    assert "spanmetrics" in config["service"]["pipelines"]["traces"]["exporters"]
    # Prometheus must scrape what the connector exports, or the Monitor tab stays empty.
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in prometheus["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    exporter_port = config["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    assert f"jaeger:{exporter_port}" in targets


def _run_entrypoint(tmp_path: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "sh", "-c", 'printf %s "${SENTRY_DSN-<unset>}"'],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True, text=True, timeout=30, check=True,
    )
    return result.stdout


def test_entrypoint_prefers_env_dsn_then_bootstrap_file_then_nothing(tmp_path: Path) -> None:
    dsn_file = tmp_path / "sentry.env"
    dsn_file.write_text("SENTRY_DSN=http://key@bugsink:8000/1\nBUGSINK_PROJECT_ID=1\n")
    from_file = {"SENTRY_ENV_FILE": str(dsn_file), "SENTRY_DSN": ""}
    assert _run_entrypoint(tmp_path, from_file) == "http://key@bugsink:8000/1"
    own = {"SENTRY_ENV_FILE": str(dsn_file), "SENTRY_DSN": "https://k@o1.ingest.sentry.io/2"}
    assert _run_entrypoint(tmp_path, own) == "https://k@o1.ingest.sentry.io/2"
    # An empty DSN would be a malformed one to the settings: it must be absent instead.
    nothing = {"SENTRY_ENV_FILE": str(tmp_path / "absent.env"), "SENTRY_DSN": ""}
    assert _run_entrypoint(tmp_path, nothing) == "<unset>"


def test_bugsink_bootstrap_creates_the_project_once_and_writes_a_network_dsn(
    tmp_path: Path,
) -> None:
    """The bootstrap script against a real Bugsink (PyPI `bugsink`, dev extra). The token
    comes from the environment here; in compose the script asks `bugsink-manage`."""
    output = tmp_path / "bootstrap" / "sentry.env"
    with Bugsink() as bugsink:
        env = {
            "PATH": os.environ["PATH"],
            "BUGSINK_API_TOKEN": bugsink.api_token,
            "BUGSINK_INTERNAL_URL": bugsink.url,
            "BUGSINK_PUBLIC_URL": "http://127.0.0.1:8080",
            "BUGSINK_TEAM": "bootstrap-test",
            "BUGSINK_PROJECT": "bootstrap-test-demo",
            "BOOTSTRAP_OUTPUT": str(output),
            "BUGSINK_READY_TIMEOUT_S": "30",
        }
        runs = [
            subprocess.run([sys.executable, str(BOOTSTRAP)], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
            for _ in range(2)
        ]
        for run in runs:
            assert run.returncode == 0, run.stdout + run.stderr
        projects = [
            project
            for project in bugsink.api("GET", "/projects/")["results"]
            if project["name"] == "bootstrap-test-demo"
        ]
    # The second run found the project instead of creating a twin.
    assert len(projects) == 1
    project = projects[0]
    written = dict(
        line.split("=", 1) for line in output.read_text().splitlines() if not line.startswith("#")
    )
    issued_key = project["dsn"].split("://", 1)[1].split("@", 1)[0]
    host = bugsink.url.split("://", 1)[1]
    assert written["SENTRY_DSN"] == f"http://{issued_key}@{host}/{project['id']}"
    assert written["BUGSINK_PROJECT_ID"] == str(project["id"])
    printed = f"http://127.0.0.1:8080/issues/{project['id']}/all/?q="
    assert printed in runs[1].stdout
    assert bugsink_issue_lists([printed]) == {printed: "all"}


# --------------------------------------------------------------------------- Bugsink hosts


def _load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bugsink_bootstrap", BOOTSTRAP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _services_with(overrides: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The compose services as `docker compose config` sees them with a .env made of
    .env.example, the required secrets filled in, and ``overrides``."""
    env = {**_env_example(), **{name: f"test-{name.lower()}" for name in SECRET_VARIABLES}}
    env.update(overrides)
    services: dict[str, dict[str, Any]] = yaml.safe_load(
        interpolate(COMPOSE_FILE.read_text(), env)
    )["services"]
    return services


def _bugsink_settings(environment: dict[str, str]) -> dict[str, Any]:
    """ALLOWED_HOSTS and BASE_URL as Bugsink's Docker settings module computes them in a
    process whose whole environment is ``environment`` (what the container gets)."""
    script = (
        "import json, runpy, sys\n"
        "settings = runpy.run_path(sys.argv[1])\n"
        "print(json.dumps({'ALLOWED_HOSTS': settings['ALLOWED_HOSTS'],"
        " 'BASE_URL': settings['BUGSINK']['BASE_URL']}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(BUGSINK_DOCKER_SETTINGS)],
        env={"PATH": os.environ["PATH"], **{k: str(v) for k, v in environment.items()}},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    settings: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return settings


def _network_hosts(services: dict[str, dict[str, Any]]) -> set[str]:
    """Host names Bugsink is reached by inside the compose network: the bootstrap's API
    calls and the DSN it writes for the services both use BUGSINK_INTERNAL_URL."""
    internal = services["bugsink-bootstrap"]["environment"]["BUGSINK_INTERNAL_URL"]
    host = urllib.parse.urlsplit(internal).hostname
    assert host
    return {host}


@pytest.mark.parametrize(
    ("public_url", "public_host"),
    [
        (None, None),  # .env.example as it is
        ("https://bugsink.example.com", "bugsink.example.com"),
        ("http://192.168.1.20:8080", "192.168.1.20"),
        ("https://tools.example.com/bugsink", "tools.example.com"),
    ],
)
def test_bugsink_answers_its_network_name_and_its_public_host(
    public_url: str | None, public_host: str | None
) -> None:
    overrides = {}
    if public_url is not None and public_host is not None:
        overrides = {"BUGSINK_PUBLIC_URL": public_url, "BUGSINK_PUBLIC_HOST": public_host}
    services = _services_with(overrides)
    settings = _bugsink_settings(services["bugsink"]["environment"])
    allowed = settings["ALLOWED_HOSTS"]
    public = urllib.parse.urlsplit(settings["BASE_URL"]).hostname
    assert public
    for host in {*_network_hosts(services), public, "localhost", "127.0.0.1"}:
        assert validate_host(host, allowed), f"Bugsink answers HTTP 400 to {host}: {allowed}"
    # Explicit, not `*`: a forged Host header is still refused.
    assert not validate_host("attacker.example", allowed), allowed
    # The bootstrap sees the same list and has nothing to warn about.
    bootstrap = services["bugsink-bootstrap"]["environment"]
    assert _load_bootstrap().public_host_warning(
        bootstrap["BUGSINK_PUBLIC_URL"], bootstrap["ALLOWED_HOSTS"]
    ) is None


def test_without_the_explicit_list_bugsink_refuses_its_network_name() -> None:
    """Why the compose file sets ALLOWED_HOSTS: Bugsink's own derivation from a public URL
    that is not localhost leaves the compose network's name out, and the bootstrap's first
    API call (and every event the services send) is answered 400."""
    services = _services_with({
        "BUGSINK_PUBLIC_URL": "https://bugsink.example.com",
        "BUGSINK_PUBLIC_HOST": "bugsink.example.com",
    })
    environment = dict(services["bugsink"]["environment"])
    del environment["ALLOWED_HOSTS"]
    derived = _bugsink_settings(environment)["ALLOWED_HOSTS"]
    assert validate_host("bugsink.example.com", derived)
    for host in _network_hosts(services):
        assert not validate_host(host, derived), derived


def test_bootstrap_warns_when_the_public_host_is_left_out() -> None:
    bootstrap = _load_bootstrap()
    services = _services_with({"BUGSINK_PUBLIC_URL": "https://bugsink.example.com"})
    environment = services["bugsink-bootstrap"]["environment"]
    warning = bootstrap.public_host_warning(
        environment["BUGSINK_PUBLIC_URL"], environment["ALLOWED_HOSTS"]
    )
    assert warning and "BUGSINK_PUBLIC_HOST=bugsink.example.com" in warning
    assert bootstrap.public_host_warning("https://a.example.com", "bugsink,.example.com") is None
    assert bootstrap.public_host_warning("https://A.Example.COM", "a.example.com") is None
    # Without the variable Bugsink derives the list from the public URL itself.
    assert bootstrap.public_host_warning("https://bugsink.example.com", None) is None


# --------------------------------------------------------------------------- .dockerignore
#
# Docker's own rules (moby/patternmatcher, which BuildKit and the classic builder use),
# ported: a line is trimmed, `#` starts a comment, `!` re-includes, the pattern is
# filepath.Clean'ed and loses a leading `/`; `*` matches within one path segment, `?` one
# character, `**` any number of segments; a pattern matching a parent directory matches
# everything below it; the last matching pattern decides.


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    regex, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                regex += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char in ".+()|{}$":
            regex += "\\" + char
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += char
        i += 1
    return re.compile(regex + "$")


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(re-include, regex) per line, in order."""
    patterns = []
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        include = pattern.startswith("!")
        pattern = pattern[1:].strip() if include else pattern
        pattern = os.path.normpath(pattern).lstrip("/") or "."
        patterns.append((include, _dockerignore_regex(pattern)))
    return patterns


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """patternmatcher's MatchesOrParentMatches: is ``path`` left out of the context?"""
    parents = os.path.dirname(path).split("/") if "/" in path else []
    matched = False
    for include, regex in patterns:
        if include != matched:
            continue  # only a re-include can change an excluded path, and vice versa
        hit = bool(regex.match(path)) or any(
            regex.match("/".join(parents[: i + 1])) for i in range(len(parents))
        )
        if hit:
            matched = not include
    return matched


def _dockerfile_copy_sources() -> list[str]:
    sources = []
    for line in re.findall(r"^COPY (.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE):
        words = line.split()
        if any(word.startswith("--from=") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    assert sources, "no COPY from the build context found"
    return sources


def _tracked_files() -> list[str]:
    result = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=True)
    return result.stdout.splitlines()


def test_dockerignore_port_follows_dockers_documented_examples() -> None:
    """The examples of Docker's .dockerignore documentation, as Docker answers them."""
    patterns = dockerignore_patterns("*/temp*\n*/*/temp*\ntemp?\n")
    assert excluded("somedir/temporary.txt", patterns)
    assert excluded("somedir/temp/file", patterns)
    assert excluded("somedir/subdir/temporary.txt", patterns)
    assert excluded("tempa", patterns) and not excluded("temp.txt", patterns)
    patterns = dockerignore_patterns("*.md\n!README*.md\nREADME-secret.md\n")
    assert excluded("CHANGES.md", patterns)
    assert not excluded("README.md", patterns) and excluded("README-secret.md", patterns)
    patterns = dockerignore_patterns("**/*.go\n")
    assert excluded("main.go", patterns) and excluded("a/b/c.go", patterns)
    # A re-included directory under an excluded one comes back with its files.
    patterns = dockerignore_patterns("*\n!deploy/demo/\n")
    assert not excluded("deploy/demo/app.py", patterns)
    assert excluded("deploy/Dockerfile", patterns)


def test_dockerignore_keeps_secrets_environments_and_caches_out_of_the_context() -> None:
    assert DOCKERIGNORE.is_file(), "without .dockerignore the context ships .venv and .env"
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text())
    for path in (
        ".env", ".env.local", ".env.example",
        ".venv/pyvenv.cfg", ".venv/lib/python3.11/site-packages/sentry_sdk/__init__.py",
        ".git/HEAD", ".git/config",
        ".pytest_cache/v/cache/nodeids", ".mypy_cache/3.11/telemetry/api.meta.json",
        ".ruff_cache/CACHEDIR.TAG", ".coverage",
        "telemetry/__pycache__/api.cpython-311.pyc", "deploy/demo/__pycache__/app.cpython-311.pyc",
        "telemetry/api.pyc", "deploy/demo/.env", "deploy/demo/demo-output/sentry.jsonl",
        "demo-output/spans.jsonl", "demo-agents.db", "deploy/demo/demo-agents.db",
        "tests/test_api.py", "benchmarks/results/run.json",
        "deploy/alertmanager/secrets.example/pagerduty_routing_key", "docker-compose.yml",
    ):
        assert excluded(path, patterns), f"{path} would be sent to the Docker daemon"


def test_dockerignore_keeps_every_dockerfile_copy_source_and_nothing_else() -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text())
    sources = _dockerfile_copy_sources()
    tracked = _tracked_files()
    context = {path for path in tracked if not excluded(path, patterns)}
    for source in sources:
        below = {path for path in tracked if path == source or path.startswith(f"{source}/")}
        assert below, f"COPY {source}: nothing tracked there"
        assert below <= context, f"COPY {source} would miss {sorted(below - context)[:5]}"
    copied = {
        path for path in tracked
        for source in sources
        if path == source or path.startswith(f"{source}/")
    }
    assert context == copied, f"sent but never copied: {sorted(context - copied)[:10]}"
    # The package's own modules, not just the directory, are in (a pattern slip such as
    # `**/*.py` would leave the directory tree and drop the code).
    assert "telemetry/__init__.py" in context and "deploy/demo/app.py" in context


# --------------------------------------------------------------------------- Bugsink links


def bugsink_issue_lists(urls: list[str]) -> dict[str, str]:
    """For each Bugsink URL, the issue list Bugsink's own URL conf serves at its path
    (``state_filter``: open, unresolved, resolved, muted or all), resolved by Django with
    Bugsink's settings; '<no match>' when the path is no issue list."""
    script = (
        "import json, sys, django\n"
        "django.setup()\n"
        "from django.urls import Resolver404, resolve\n"
        "found = {}\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        found[path] = resolve(path).kwargs.get('state_filter', '<no match>')\n"
        "    except Resolver404:\n"
        "        found[path] = '<no match>'\n"
        "print(json.dumps(found))\n"
    )
    paths = [urllib.parse.urlsplit(url).path for url in urls]
    result = subprocess.run(
        [sys.executable, "-c", script, *paths],
        env={"PATH": os.environ["PATH"], "SECRET_KEY": "url-resolution-only",
             "DJANGO_SETTINGS_MODULE": "bugsink.settings.default"},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    by_path: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return {url: by_path[path] for url, path in zip(urls, paths, strict=True)}


def _grafana_generator() -> ModuleType:
    path = ROOT / "grafana" / "generate.py"
    spec = importlib.util.spec_from_file_location("grafana_generate", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_bugsink_issue_links_list_every_issue_not_only_open_ones(
    services: dict[str, dict[str, Any]],
) -> None:
    """An alert or a panel links to the issues of a release or a trace; Bugsink's
    /issues/<project>/ lists open issues only, so a resolved (or muted) issue that is
    happening again would not be there. Every default link base uses /issues/<project>/all/."""
    dashboards = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    bases = {
        ".env.example": _env_example()["SENTRY_ISSUES_URL"],
        "compose prometheus": services["prometheus"]["environment"]["SENTRY_ISSUES_URL"],
        "compose grafana": services["grafana"]["environment"]["SENTRY_ISSUES_URL"],
        "grafana/generate.py": _grafana_generator().DEFAULT_SENTRY_ISSUES_URL,
        **{
            f"grafana/dashboards/{path.name}": next(
                variable["query"]
                for variable in json.loads(path.read_text())["templating"]["list"]
                if variable["name"] == "sentry_issues_url"
            )
            for path in dashboards
        },
    }
    assert len(bases) == 4 + len(dashboards) and dashboards
    lists = bugsink_issue_lists(list(bases.values()))
    for where, url in bases.items():
        assert lists[url] == "all", f"{where}: {url} lists {lists[url]} issues"
    # The check itself can tell: the old form is the open list.
    old = "http://127.0.0.1:8080/issues/1/?q="
    assert bugsink_issue_lists([old]) == {old: "open"}
