"""The checks of ``telemetry doctor`` that do not depend on the service's settings:
installed versions, the live process's Sentry/OTel wiring, Prometheus, and DSNs committed
to the repository. Result types and the small HTTP client live here too, so that
``telemetry.doctor`` (the settings-driven checks and the entry points) can import them.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "CheckResult",
    "Distribution",
    "HttpAnswer",
    "Status",
    "check_prometheus",
    "check_runtime",
    "check_versions",
    "find_dsns",
    "http_request",
    "installed_distributions",
    "scan_repo_for_dsns",
]


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    #: Not checked (not configured, or not checkable from this process); never fails a run.
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix,
        }


# -- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What a server said: a status (and body), or the network problem in plain words."""

    status: int | None
    body: bytes = b""
    problem: str | None = None
    timed_out: bool = False
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


def describe_network_error(error: BaseException, timeout: float) -> tuple[str, bool, bool]:
    """(plain description, timed out, refused), walking the wrapped causes urllib and
    urllib3 hide the real error behind."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused", False, True
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in seen):
        return f"no answer within {timeout:g}s", True, False
    if any(isinstance(e, socket.gaierror) for e in seen):
        return "the host name does not resolve", False, False
    if any(isinstance(e, ssl.SSLError) for e in seen):
        return f"TLS failed ({error})", False, False
    return f"{type(error).__name__}: {error}", False, False


def http_request(
    url: str,
    *,
    timeout: float,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpAnswer:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(status=response.status, body=response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(status=error.code, body=error.read())
    except (OSError, ValueError) as error:
        problem, timed_out, refused = describe_network_error(error, timeout)
        return HttpAnswer(status=None, problem=problem, timed_out=timed_out, refused=refused)


# -- versions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """The metadata the version checks read: name, version and Requires-Dist lines."""

    name: str
    version: str
    requires: tuple[str, ...] = ()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, Distribution]:
    found: dict[str, Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[_canonical(name)] = Distribution(
                _canonical(name), dist.version, tuple(dist.requires or ())
            )
    return found


_INSTRUMENTATION_PREFIX = "opentelemetry-instrumentation-"


def _declared_ranges(dist: Distribution) -> tuple[list[Any], list[Any]]:
    """The libraries an instrumentation declares it instruments (``extra == "instruments"``,
    generated from its ``package.py`` ``_instruments``) and the either-or set
    (``"instruments-any"``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    every: list[Any] = []
    any_of: list[Any] = []
    for line in dist.requires:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None:
            continue
        if requirement.marker.evaluate({"extra": "instruments"}):
            every.append(requirement)
        elif requirement.marker.evaluate({"extra": "instruments-any"}):
            any_of.append(requirement)
    return every, any_of


def _instrumentation_result(
    dist: Distribution, dists: Mapping[str, Distribution]
) -> tuple[CheckResult | None, list[str]]:
    """A FAIL when the installed library is outside the declared range (the instrumentor
    then refuses to patch it), else None and the ``library version`` pairs it covers."""
    every, any_of = _declared_ranges(dist)
    covered: list[str] = []
    conflicts: list[str] = []
    for requirement in every:
        library = dists.get(_canonical(requirement.name))
        if library is None:
            continue  # nothing installed to instrument: the instrumentor stays idle
        # The same containment test OTel's instrumentor applies before patching.
        if requirement.specifier.contains(library.version):
            covered.append(f"{requirement.name} {library.version}")
        else:
            conflicts.append(f"{requirement.name} {library.version} (declared: {requirement})")
    installed_any = [
        (requirement, dists[_canonical(requirement.name)])
        for requirement in any_of
        if _canonical(requirement.name) in dists
    ]
    matching_any = [
        f"{req.name} {lib.version}"
        for req, lib in installed_any
        if req.specifier.contains(lib.version)
    ]
    if installed_any and not matching_any:
        conflicts.extend(
            f"{lib.name} {lib.version} (declared: {req})" for req, lib in installed_any
        )
    covered.extend(matching_any)
    if not conflicts:
        return None, covered
    short = dist.name.removeprefix(_INSTRUMENTATION_PREFIX)
    pins = " ".join(f"'{str(req).split(';', 1)[0]}'" for req, _ in installed_any) or " ".join(
        f"'{str(req).split(';', 1)[0]}'" for req in every
    )
    return (
        CheckResult(
            f"instrumentation.{short}",
            Status.FAIL,
            f"{dist.name} {dist.version} does not support the installed "
            f"{', '.join(conflicts)}: it silently instruments nothing",
            f"install a supported version (pip install {pins}) or an instrumentation release "
            "that declares support for the installed one",
        ),
        covered,
    )


def _contrib_release(dists: Mapping[str, Distribution]) -> tuple[int, ...] | None:
    """The contrib line (0.Nb) the installed SDK belongs with: the semantic-conventions
    release the SDK pins, so no offset table has to be maintained here."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import Version

    sdk = dists.get("opentelemetry-sdk")
    for line in sdk.requires if sdk else ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if _canonical(requirement.name) == "opentelemetry-semantic-conventions":
            for spec in requirement.specifier:
                if spec.operator == "==":
                    return Version(spec.version).release[:2]
    return None


def _skew(dists: Mapping[str, Distribution]) -> list[str]:
    from packaging.version import InvalidVersion, Version

    problems: list[str] = []
    api, sdk = dists.get("opentelemetry-api"), dists.get("opentelemetry-sdk")
    if api and sdk and api.version != sdk.version:
        problems.append(f"opentelemetry-api {api.version} beside opentelemetry-sdk {sdk.version}")
    expected = _contrib_release(dists)
    for name, dist in sorted(dists.items()):
        if not name.startswith("opentelemetry-"):
            continue
        try:
            release = Version(dist.version).release
        except InvalidVersion:
            continue
        core_line = name.startswith(("opentelemetry-exporter-otlp", "opentelemetry-proto"))
        if sdk and core_line and release[:1] == (1,):
            if release[:2] != Version(sdk.version).release[:2]:
                problems.append(f"{name} {dist.version} beside opentelemetry-sdk {sdk.version}")
        elif expected and sdk and release[:1] == (0,) and release[:2] != expected:
            line = ".".join(map(str, expected))
            problems.append(
                f"{name} {dist.version} (opentelemetry-sdk {sdk.version} needs {line}bX)"
            )
    return problems


def _untested(dists: Mapping[str, Distribution]) -> list[str]:
    """Installed sentry-sdk/OpenTelemetry versions outside the pins this library tests."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems: list[str] = []
    ours = dists.get("telemetry")
    for line in ours.requires if ours else ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = _canonical(requirement.name)
        installed = dists.get(name)
        relevant = name == "sentry-sdk" or name.startswith("opentelemetry-")
        if relevant and installed and not requirement.specifier.contains(installed.version):
            problems.append(f"{name} {installed.version} (tested: {requirement.specifier})")
    return problems


def check_versions(dists: Mapping[str, Distribution] | None = None) -> list[CheckResult]:
    dists = installed_distributions() if dists is None else dists
    try:
        import packaging  # noqa: F401  (present wherever an instrumentation is installed)
    except ImportError:
        return [
            CheckResult(
                "versions",
                Status.SKIP,
                "the `packaging` library is not installed, so version ranges cannot be read",
                "pip install packaging",
            )
        ]

    def version_of(name: str) -> str:
        dist = dists.get(name)
        return dist.version if dist else "not installed"

    instrumentations = sorted(n for n in dists if n.startswith(_INSTRUMENTATION_PREFIX))
    core = ("sentry-sdk", "opentelemetry-api", "opentelemetry-sdk")
    plugins = [
        f"{n.removeprefix(_INSTRUMENTATION_PREFIX)} {dists[n].version}" for n in instrumentations
    ]
    summary = (
        ", ".join(f"{name} {version_of(name)}" for name in core)
        + f"; instrumentations: {', '.join(plugins) or 'none'}"
    )
    results: list[CheckResult] = []
    skew, untested = _skew(dists), _untested(dists)
    if skew:
        results.append(
            CheckResult(
                "versions",
                Status.WARN,
                f"{summary}. Mismatched OpenTelemetry releases: {'; '.join(skew)}",
                "install matching releases: opentelemetry-api/sdk/exporters 1.N.x with "
                "instrumentations 0.(N+21)bx (e.g. 1.45.1 with 0.66b1)",
            )
        )
    elif untested:
        results.append(
            CheckResult(
                "versions",
                Status.WARN,
                f"{summary}. Outside the versions telemetry is tested with: {'; '.join(untested)}",
                "install the pinned versions (uv sync / pip install -c the lock file); their "
                "OTel glue changes behaviour between minor releases",
            )
        )
    else:
        results.append(CheckResult("versions", Status.PASS, summary))
    covered: list[str] = []
    for name in instrumentations:
        failure, libraries = _instrumentation_result(dists[name], dists)
        covered.extend(libraries)
        if failure is not None:
            results.append(failure)
    if not any(r.name.startswith("instrumentation.") for r in results) and instrumentations:
        results.append(
            CheckResult(
                "instrumentations",
                Status.PASS,
                "every installed library is in its instrumentation's declared range: "
                + (", ".join(covered) or "none of the instrumented libraries is installed"),
            )
        )
    return results


# -- the live process ----------------------------------------------------------------------


_PROBE_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
_PROBE_SPAN_ID = 0x00F067AA0BA902B7


def _propagator_result() -> CheckResult:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.propagate import get_global_textmap
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    propagator = get_global_textmap()
    kind = type(propagator).__name__
    span = NonRecordingSpan(
        SpanContext(_PROBE_TRACE_ID, _PROBE_SPAN_ID, False, TraceFlags(TraceFlags.SAMPLED))
    )
    carrier: dict[str, str] = {}
    try:
        propagator.inject(carrier, context=trace.set_span_in_context(span, Context()))
    except Exception as error:  # a broken propagator must show up here, not in production
        carrier = {}
        kind = f"{kind} (inject raised {error!r})"
    if f"{_PROBE_TRACE_ID:032x}" in carrier.get("traceparent", ""):
        return CheckResult(
            "runtime.propagator",
            Status.PASS,
            f"the global propagator ({kind}) writes {', '.join(sorted(carrier))}",
        )
    return CheckResult(
        "runtime.propagator",
        Status.WARN,
        f"the global propagator ({kind}) does not write traceparent "
        f"(wrote: {', '.join(sorted(carrier)) or 'nothing'}): downstream services start new traces",
        "call setup_telemetry() after any sentry_sdk.init(); with sentry-sdk's OTLPIntegration "
        "pass setup_propagator=False",
    )


def check_runtime() -> list[CheckResult]:
    """Double instrumentation and propagation, as wired in *this* process."""
    import sentry_sdk
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    client = sentry_sdk.get_client()
    otel_set = isinstance(trace.get_tracer_provider(), TracerProvider)
    if not client.is_active() and not otel_set:
        return [
            CheckResult(
                "runtime",
                Status.SKIP,
                "neither sentry-sdk nor OpenTelemetry is initialised in this process (the CLI "
                "runs beside the service, not inside it)",
                "to check the live wiring call telemetry.doctor.run_checks() inside the service",
            )
        ]
    results: list[CheckResult] = []
    if client.is_active():
        options = client.options
        tracing = options.get("traces_sample_rate") is not None or options.get("traces_sampler")
        if tracing and options.get("instrumenter") != "otel":
            results.append(
                CheckResult(
                    "runtime.sentry-tracing",
                    Status.WARN,
                    "sentry-sdk's own performance tracing is on beside OpenTelemetry "
                    f"(traces_sample_rate={options.get('traces_sample_rate')}, "
                    f"instrumenter={options.get('instrumenter')!r}): requests are traced twice "
                    "and Sentry samples a different subset than Jaeger",
                    "let setup_telemetry() initialise sentry-sdk, or drop traces_sample_rate/"
                    "traces_sampler from your sentry_sdk.init()",
                )
            )
        else:
            results.append(
                CheckResult(
                    "runtime.sentry-tracing",
                    Status.PASS,
                    "sentry-sdk leaves tracing to OpenTelemetry",
                )
            )
        web = sorted(set(client.integrations) & {"starlette", "fastapi"})
        if web:
            results.append(
                CheckResult(
                    "runtime.sentry-web-integration",
                    Status.WARN,
                    f"sentry-sdk's {'/'.join(web)} integration is active: its middleware runs "
                    "outside OTel's server span, so unhandled errors get another trace id",
                    "initialise sentry-sdk with auto_enabling_integrations=False (what "
                    "setup_telemetry does) or disabled_integrations=[StarletteIntegration(), "
                    "FastApiIntegration()]",
                )
            )
    results.append(_propagator_result())
    return results


# -- Prometheus ------------------------------------------------------------------------------


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


# -- DSNs committed to the repository --------------------------------------------------------

_MAX_SCANNED_BYTES = 1024 * 1024
_DSN_RE = re.compile(
    r"(?P<scheme>https?)://(?P<key>[^\s:@/'\"`<>]+)(?::[^\s@/'\"`]*)?@"
    r"(?P<host>[^\s/'\"`@]+)/(?:[^\s/'\"`]+/)*(?P<project>\d+)\b"
)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{16,}")
_TEST_HOSTS = re.compile(
    r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\]|0\.0\.0\.0|(.*\.)?example\.(com|org|net)"
    r"|.*\.(example|test|invalid|localhost))$",
    re.IGNORECASE,
)


def find_dsns(text: str) -> list[int]:
    """Line numbers holding what looks like a real Sentry DSN.

    Real keys are 32 hex characters, so anything else in the key position is a placeholder
    (``examplePublicKey``, ``<key>``, ``${SENTRY_KEY}``, ``public``); a hex key is still
    ignored on loopback and reserved example/test hosts, where it cannot reach a real
    project, and when it is one repeated character (``0000...``).
    """
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _DSN_RE.finditer(line):
            key = match.group("key")
            host = re.sub(r":\d*$", "", match.group("host"))
            if (
                _HEX_KEY.fullmatch(key)
                and len(set(key.lower())) > 1
                and not _TEST_HOSTS.match(host)
            ):
                lines.append(number)
                break
    return lines


def _tracked_files(repo: Path) -> list[str]:
    answer = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    return [name for name in answer.stdout.decode(errors="replace").split("\0") if name]


def scan_repo_for_dsns(repo: Path) -> CheckResult:
    name = "dsn-in-repo"
    try:
        files = _tracked_files(repo)
    except FileNotFoundError:
        return CheckResult(name, Status.SKIP, "git is not installed", "install git")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = getattr(error, "stderr", b"") or b""
        return CheckResult(
            name,
            Status.FAIL,
            f"cannot list the tracked files of {repo}: {stderr.decode(errors='replace').strip()}",
            "pass --repo with the path of a git work tree",
        )
    findings: list[str] = []
    for relative in files:
        path = repo / relative
        try:
            if not path.is_file() or path.stat().st_size > _MAX_SCANNED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192] or b"@" not in data:
            continue
        findings.extend(f"{relative}:{line}" for line in find_dsns(data.decode(errors="replace")))
    if not findings:
        return CheckResult(
            name,
            Status.PASS,
            f"no Sentry DSN with a real-looking key in {len(files)} tracked files",
        )
    shown = ", ".join(findings[:10]) + (
        f" and {len(findings) - 10} more" if len(findings) > 10 else ""
    )
    return CheckResult(
        name,
        Status.FAIL,
        f"Sentry DSN with a key committed at {shown} (keys not shown)",
        "move it to SENTRY_DSN in the environment or a secret store, then rotate the key "
        "(Sentry: Project Settings > Client Keys); it stays in the git history",
    )
