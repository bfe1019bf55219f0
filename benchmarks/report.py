"""Report math and rendering: samples -> per-configuration rows -> tables, targets, JSON.

Comparisons between configurations are made WITHIN a round (configurations alternate in
rounds on a noisy machine, so two measurements of one round saw the same noise) and the
median across rounds is reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "Row",
    "Sample",
    "Target",
    "build_rows",
    "evaluate_targets",
    "machine_info",
    "markdown_report",
    "median_within_rounds",
    "write_json",
]

LOADS = ("saturation", "paced")


@dataclass
class Sample:
    """One configuration under one load on one endpoint, in one round."""

    config: str
    endpoint: str
    load: str  # "saturation" or "paced"
    round: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_s: float
    rss_mb: float
    sink: dict[str, int] = field(default_factory=dict)
    #: CPU the idle server burns (background threads, timers), in ms per second, measured
    #: once per server after warm-up: at a paced rate it adds ``idle / rate`` per request.
    idle_cpu_ms_per_s: float = 0.0

    def per_request(self, value: float) -> float:
        return value / self.requests if self.requests else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.per_request(self.cpu_s * 1e6)

    @property
    def otlp_spans_per_request(self) -> float:
        """Spans received by the Jaeger (OTLP) sink per request served."""
        return self.per_request(self.sink.get("otlp_spans", 0))

    @property
    def sentry_spans_per_request(self) -> float:
        """Spans received by Sentry (OTLP path, or inside envelope transactions)."""
        spans = self.sink.get("sentry_otlp_spans", 0) + self.sink.get("transaction_spans", 0)
        return self.per_request(spans)

    @property
    def transactions_per_request(self) -> float:
        return self.per_request(self.sink.get("transactions", 0))

    @property
    def events_per_request(self) -> float:
        return self.per_request(self.sink.get("error_events", 0))

    def metric(self, name: str) -> float:
        value = getattr(self, name)
        return float(value)


def median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def _index(samples: Iterable[Sample]) -> dict[tuple[str, str, str, int], Sample]:
    return {(s.config, s.endpoint, s.load, s.round): s for s in samples}


def median_within_rounds(
    samples: Sequence[Sample],
    config: str,
    reference: str,
    endpoint: str,
    load: str,
    combine: Callable[[Sample, Sample], float | None],
) -> float | None:
    """``combine(sample of config, sample of reference)`` in every round where both ran,
    then the median across those rounds (None when no round has both)."""
    by_key = _index(samples)
    rounds = sorted({s.round for s in samples})
    values: list[float] = []
    for r in rounds:
        mine = by_key.get((config, endpoint, load, r))
        ref = by_key.get((reference, endpoint, load, r))
        if mine is None or ref is None:
            continue
        value = combine(mine, ref)
        if value is not None:
            values.append(value)
    return median(values)


def ratio_of(metric: str) -> Callable[[Sample, Sample], float | None]:
    def combine(mine: Sample, ref: Sample) -> float | None:
        denominator = ref.metric(metric)
        return mine.metric(metric) / denominator if denominator else None

    return combine


def delta_of(metric: str) -> Callable[[Sample, Sample], float | None]:
    return lambda mine, ref: mine.metric(metric) - ref.metric(metric)


@dataclass
class Row:
    endpoint: str
    load: str
    config: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    cpu_added_us: float | None
    rss_mb: float
    idle_cpu_ms_per_s: float
    otlp_spans: float
    sentry_spans: float
    transactions: float
    events: float
    errors: int
    ratio_to_bare: float | None
    #: CPU per request / bare's, within each round, median across rounds.
    cpu_ratio_to_bare: float | None = None


def build_rows(samples: Sequence[Sample], configs: Sequence[str], base: str = "bare") -> list[Row]:
    rows: list[Row] = []
    endpoints = list(dict.fromkeys(s.endpoint for s in samples))
    for endpoint in endpoints:
        for load in LOADS:
            for config in configs:
                mine = [
                    s
                    for s in samples
                    if s.config == config and s.endpoint == endpoint and s.load == load
                ]
                if not mine:
                    continue

                def med(name: str, group: list[Sample] = mine) -> float:
                    return float(median(s.metric(name) for s in group) or 0.0)

                rows.append(
                    Row(
                        endpoint=endpoint,
                        load=load,
                        config=config,
                        rounds=len(mine),
                        rps=med("rps"),
                        p50_ms=med("p50_ms"),
                        p99_ms=med("p99_ms"),
                        cpu_us=med("cpu_us_per_request"),
                        cpu_added_us=median_within_rounds(
                            samples, config, base, endpoint, load, delta_of("cpu_us_per_request")
                        ),
                        rss_mb=med("rss_mb"),
                        idle_cpu_ms_per_s=med("idle_cpu_ms_per_s"),
                        otlp_spans=med("otlp_spans_per_request"),
                        sentry_spans=med("sentry_spans_per_request"),
                        transactions=med("transactions_per_request"),
                        events=med("events_per_request"),
                        errors=sum(s.errors for s in mine),
                        ratio_to_bare=median_within_rounds(
                            samples, config, base, endpoint, load, ratio_of("rps")
                        ),
                        cpu_ratio_to_bare=median_within_rounds(
                            samples, config, base, endpoint, load, ratio_of("cpu_us_per_request")
                        ),
                    )
                )
    return rows


def added_ratio(
    samples: Sequence[Sample],
    config: str,
    reference: str,
    endpoint: str,
    load: str,
    base: str = "bare",
) -> float | None:
    """(config - base) / (reference - base) of CPU per request, within each round, median."""
    by_key = _index(samples)
    values: list[float] = []
    for r in sorted({s.round for s in samples}):
        mine = by_key.get((config, endpoint, load, r))
        ref = by_key.get((reference, endpoint, load, r))
        bare = by_key.get((base, endpoint, load, r))
        if mine is None or ref is None or bare is None:
            continue
        ref_added = ref.cpu_us_per_request - bare.cpu_us_per_request
        if ref_added > 0:
            values.append((mine.cpu_us_per_request - bare.cpu_us_per_request) / ref_added)
    return median(values)


@dataclass
class Target:
    name: str
    endpoint: str
    value: float | None
    limit: float
    higher_is_better: bool
    detail: str

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def evaluate_targets(samples: Sequence[Sample]) -> list[Target]:
    """The issue's targets, for every endpoint that has the configurations they need."""
    targets: list[Target] = []
    configs = {s.config for s in samples}
    for endpoint in dict.fromkeys(s.endpoint for s in samples):

        def within(
            config: str, ref: str, load: str, metric: str, endpoint: str = endpoint
        ) -> float | None:
            return median_within_rounds(samples, config, ref, endpoint, load, ratio_of(metric))

        # The two targets are at saturation; the paced rows are for reference (at a
        # low paced rate the idle background work is a larger share of each request).
        for load in ("saturation", "paced"):
            if {"bridge-otlp", "otel", "bare"} <= configs:
                targets.append(
                    Target(
                        f"staging ({load}): bridge-otlp added CPU/request "
                        "vs otel alone's added CPU",
                        endpoint,
                        added_ratio(samples, "bridge-otlp", "otel", endpoint, load),
                        1.1,
                        False,
                        "(bridge-otlp - bare) / (otel - bare), CPU µs per request",
                    )
                )
            if {"bridge-prod", "bare"} <= configs:
                targets.append(
                    Target(
                        f"production ({load}): bridge-prod CPU/request vs bare",
                        endpoint,
                        within("bridge-prod", "bare", load, "cpu_us_per_request"),
                        1.15,
                        False,
                        "≤ 15% CPU over bare",
                    )
                )
        for degraded in ("bridge-down", "bridge-blackhole"):
            if {degraded, "bridge-otlp"} <= configs:
                targets.append(
                    Target(
                        f"{degraded} throughput vs bridge-otlp",
                        endpoint,
                        within(degraded, "bridge-otlp", "saturation", "rps"),
                        0.95,
                        True,
                        "saturation requests/s ratio, within 5%",
                    )
                )
                targets.append(
                    Target(
                        f"{degraded} p99 vs bridge-otlp",
                        endpoint,
                        within(degraded, "bridge-otlp", "saturation", "p99_ms"),
                        1.05,
                        False,
                        "saturation p99 ratio, within 5%",
                    )
                )
        if {"bridge-envelope", "sentry"} <= configs:
            targets.append(
                Target(
                    "bridge-envelope CPU/request vs sentry alone",
                    endpoint,
                    within("bridge-envelope", "sentry", "paced", "cpu_us_per_request"),
                    1.0,
                    False,
                    "paced; no worse than sentry-sdk alone",
                )
            )
            targets.append(
                Target(
                    "bridge-envelope throughput vs sentry alone",
                    endpoint,
                    within("bridge-envelope", "sentry", "saturation", "rps"),
                    1.0,
                    True,
                    "saturation; no worse than sentry-sdk alone",
                )
            )
    return targets


# -- rendering ------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


TABLE_HEADER = (
    "| config | req/s | x bare | p50 ms | p99 ms | CPU µs/req | CPU x bare | +CPU µs "
    "| idle CPU ms/s | RSS MB | OTLP spans/req | Sentry spans/req | tx/req | events/req "
    "| errors |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def markdown_tables(rows: Sequence[Row]) -> str:
    parts: list[str] = []
    for endpoint in dict.fromkeys(r.endpoint for r in rows):
        for load in LOADS:
            group = [r for r in rows if r.endpoint == endpoint and r.load == load]
            if not group:
                continue
            parts.append(f"### /{endpoint}, {load}\n\n{TABLE_HEADER}")
            for r in group:
                parts.append(
                    f"| {r.config} | {r.rps:.0f} | {_fmt(r.ratio_to_bare, 3)} "
                    f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_us:.0f} "
                    f"| {_fmt(r.cpu_ratio_to_bare, 2)} | {_fmt(r.cpu_added_us, 0)} "
                    f"| {r.idle_cpu_ms_per_s:.0f} | {r.rss_mb:.0f} "
                    f"| {r.otlp_spans:.2f} | {r.sentry_spans:.2f} | {r.transactions:.2f} "
                    f"| {r.events:.2f} | {r.errors} |"
                )
            parts.append("")
    return "\n".join(parts)


def markdown_targets(targets: Sequence[Target]) -> str:
    lines = ["| target | endpoint | value | limit | result |", "|---|---|---:|---:|---|"]
    for t in targets:
        verdict = {True: "met", False: "**missed**", None: "n/a"}[t.passed]
        bound = "≥" if t.higher_is_better else "≤"
        lines.append(
            f"| {t.name} ({t.detail}) | /{t.endpoint} | {_fmt(t.value, 3)} "
            f"| {bound} {t.limit} | {verdict} |"
        )
    return "\n".join(lines)


def markdown_report(
    rows: Sequence[Row], targets: Sequence[Target], machine: dict[str, Any], notes: Sequence[str]
) -> str:
    head = [
        f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, "
        f"Python {machine['python']}, {machine['kernel']}; {machine['date']}.",
        f"Command: `{machine['command']}`",
    ]
    head += [f"Note: {n}" for n in notes]
    return "\n\n".join(
        ["\n\n".join(head), markdown_tables(rows), "### Targets\n\n" + markdown_targets(targets)]
    )


def machine_info(command: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
    }


def write_json(
    directory: Path,
    *,
    machine: dict[str, Any],
    params: dict[str, Any],
    samples: Sequence[Sample],
    rows: Sequence[Row],
    targets: Sequence[Target],
    notes: Sequence[str],
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    document = {
        "machine": machine,
        "params": params,
        "notes": list(notes),
        "rows": [asdict(r) for r in rows],
        "targets": [t.to_dict() for t in targets],
        "samples": [
            {
                **asdict(s),
                "cpu_us_per_request": s.cpu_us_per_request,
                "otlp_spans_per_request": s.otlp_spans_per_request,
                "sentry_spans_per_request": s.sentry_spans_per_request,
            }
            for s in samples
        ],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path
