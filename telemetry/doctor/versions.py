"""The version checks of ``telemetry doctor``: OpenTelemetry releases that do not belong
together, versions outside the ones this library is tested with, and instrumentations whose
declared range excludes the installed library (they then silently instrument nothing).
Read from installed package metadata only; nothing is imported.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry.doctor.checks import CheckResult, Status
from telemetry.shared import DISTRIBUTION

__all__ = ["Distribution", "check_versions", "installed_distributions"]


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
    """Installed sentry-sdk/OpenTelemetry versions outside the ranges this library declares
    (the distribution's own requirements; the exact tested set lives in its uv.lock)."""
    from packaging.requirements import InvalidRequirement, Requirement

    problems: list[str] = []
    ours = dists.get(DISTRIBUTION)
    for line in ours.requires if ours else ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = _canonical(requirement.name)
        installed = dists.get(name)
        relevant = name == "sentry-sdk" or name.startswith("opentelemetry-")
        if relevant and installed and not requirement.specifier.contains(installed.version):
            problems.append(f"{name} {installed.version} (supported: {requirement.specifier})")
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
