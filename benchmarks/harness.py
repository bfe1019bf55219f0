"""Processes and measurements: sinks, one uvicorn server per configuration and round,
``wrk`` (saturation) and the paced generator, CPU and RSS from ``/proc``.

Placement: the server on one core (``taskset -c <first>``), the load generator and the
sinks on another. Configurations alternate in rounds (A B C ... A B C ...); each (round,
configuration) gets a fresh server process that runs, per endpoint, a saturation phase then
a paced phase. After each phase the server flushes its telemetry (SIGUSR1, see
:mod:`benchmarks.app`) and the sinks' counts are read, so spans per request belong to the
phase that produced them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks.app import CONFIGS, DEFAULT_CONFIGS, prepare_database, sqlite_url
from benchmarks.report import Sample
from benchmarks.sinks import COUNT_KEYS, SinkPorts, fetch_counts

__all__ = ["Options", "Placement", "parse_wrk", "run_benchmark"]

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Options:
    rounds: int = 3
    duration: float = 10.0
    rate: float = 200.0
    connections: int = 16
    configs: list[str] = field(default_factory=lambda: list(DEFAULT_CONFIGS))
    endpoints: list[str] = field(default_factory=lambda: ["items", "json"])
    database_url: str | None = None
    warmup: float = 1.0
    idle: float = 2.0
    flush_timeout: float = 5.0
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))


@dataclass(frozen=True)
class Placement:
    server: list[str]  # the command prefix pinning the server, e.g. ["taskset", "-c", "0"]
    load: list[str]
    note: str | None

    @classmethod
    def detect(cls) -> Placement:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or shutil.which("taskset") is None:
            return cls(
                [],
                [],
                f"not pinned: {len(cores)} core(s) available (or no taskset); server, "
                "load generator and sinks share the CPU",
            )
        return cls(
            ["taskset", "-c", str(cores[0])],
            ["taskset", "-c", str(cores[1])],
            None,
        )


# -- /proc ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, living or exited)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def parse_wrk(output: str) -> WrkResult:
    """Read requests, duration, req/s, the 50%/99% latency lines (``--latency``) and
    errors (socket errors and non-2xx/3xx responses) from wrk's report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if total is None or rps is None or p50 is None or p99 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_ms(total.group(2) + total.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        errors=errors,
    )


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def sink_process(placement: Placement) -> Iterator[SinkPorts]:
    process = subprocess.Popen(
        [*placement.load, sys.executable, "-m", "benchmarks.sinks"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the sink process did not start")
        yield SinkPorts(**json.loads(line))
    finally:
        stop_process(process, 5.0)


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment minus anything that would configure telemetry behind our back."""
    prefixes = ("OTEL_", "SENTRY_", "TELEMETRY_", "BENCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.pop("ENVIRONMENT", None)
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


@dataclass
class Server:
    config: str
    process: subprocess.Popen[Any]
    port: int
    marker: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/{endpoint}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/json`` answers 200; RuntimeError with the log tail if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.config} server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("json"), timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        stop_process(self.process)
        raise RuntimeError(f"{self.config} server did not answer:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def flush(self, timeout: float) -> bool:
        """Ask the app to flush its telemetry; True once it says it has."""
        self.marker.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.marker.exists():
                return True
            time.sleep(0.02)
        return False


def launch_server(
    config: str,
    *,
    placement: Placement,
    jaeger_url: str,
    sentry_dsn: str,
    database_url: str,
    workdir: Path,
    flush_timeout: float,
) -> Server:
    """Start uvicorn with the app of ``config`` (see :meth:`Server.wait_ready`)."""
    port = free_port()
    marker = workdir / f"flushed-{config}"
    log_path = workdir / f"server-{config}.log"
    env = server_env(
        {
            "BENCH_CONFIG": config,
            "BENCH_JAEGER_URL": jaeger_url,
            "BENCH_SENTRY_DSN": sentry_dsn,
            "BENCH_DATABASE_URL": database_url,
            "BENCH_FLUSH_MARKER": str(marker),
            "BENCH_FLUSH_S": str(flush_timeout),
        }
    )
    command = [
        *placement.server,
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "benchmarks.app:create_app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--lifespan",
        "on",
    ]
    log: IO[bytes] = log_path.open("wb")
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
    log.close()
    return Server(config, process, port, marker, log_path)


def start_server(config: str, **kwargs: Any) -> Server:
    """:func:`launch_server`, then wait until it answers."""
    server = launch_server(config, **kwargs)
    server.wait_ready()
    return server


def run_wrk(
    placement: Placement, url: str, *, duration: float, connections: int, threads: int = 1
) -> WrkResult:
    seconds = max(1, round(duration))
    output = subprocess.run(
        [
            *placement.load,
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(output)


def run_paced(
    placement: Placement,
    url: str,
    *,
    rate: float,
    duration: float,
    connections: int,
    on_start: Callable[[], None],
) -> dict[str, Any]:
    """Run :mod:`benchmarks.loadgen`; ``on_start`` is called right before the load starts."""
    process = subprocess.Popen(
        [
            *placement.load,
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            url,
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--connections",
            str(connections),
        ],
        cwd=ROOT,
        env=server_env({}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    if process.stdout.readline().strip() != "READY":
        process.kill()
        raise RuntimeError("the paced load generator did not start")
    on_start()
    process.stdin.write("GO\n")
    process.stdin.flush()
    result: dict[str, Any] = json.loads(process.stdout.readline())
    process.wait(30)
    return result


# -- the run ------------------------------------------------------------------------------


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after.get(key, 0) - before.get(key, 0) for key in COUNT_KEYS}


def sink_targets(config: str, ports: SinkPorts, down_port: int) -> tuple[str, str]:
    state = CONFIGS[config].sinks
    if state == "down":
        return f"http://127.0.0.1:{down_port}", ports.sentry_dsn(down_port)
    if state == "blackhole":
        return f"http://127.0.0.1:{ports.blackhole}", ports.sentry_dsn(ports.blackhole)
    return ports.otlp_url, ports.sentry_dsn()


def measure_config(
    config: str,
    round_index: int,
    *,
    options: Options,
    placement: Placement,
    ports: SinkPorts,
    down_port: int,
    database_url: str,
    workdir: Path,
) -> list[Sample]:
    jaeger_url, sentry_dsn = sink_targets(config, ports, down_port)
    sinks_up = CONFIGS[config].sinks == "up"
    server = start_server(
        config,
        placement=placement,
        jaeger_url=jaeger_url,
        sentry_dsn=sentry_dsn,
        database_url=database_url,
        workdir=workdir,
        flush_timeout=options.flush_timeout,
    )
    samples: list[Sample] = []

    def settle() -> dict[str, int]:
        if sinks_up and not server.flush(options.flush_timeout + 5):
            options.log(f"  {config}: flush did not finish in time")
        return fetch_counts(ports)

    try:
        for endpoint in options.endpoints:
            run_wrk(
                placement,
                server.url(endpoint),
                duration=options.warmup,
                connections=min(4, options.connections),
            )
        counts = settle()
        idle_cpu0 = process_cpu_seconds(server.pid)
        time.sleep(options.idle)
        idle = (process_cpu_seconds(server.pid) - idle_cpu0) * 1000 / options.idle
        counts = fetch_counts(ports)
        for endpoint in options.endpoints:
            # Saturation.
            cpu0 = process_cpu_seconds(server.pid)
            wrk = run_wrk(
                placement,
                server.url(endpoint),
                duration=options.duration,
                connections=options.connections,
            )
            after = settle()
            cpu = process_cpu_seconds(server.pid) - cpu0
            samples.append(
                Sample(
                    config=config,
                    endpoint=endpoint,
                    load="saturation",
                    round=round_index,
                    requests=wrk.requests,
                    duration_s=wrk.duration_s,
                    rps=wrk.rps,
                    p50_ms=wrk.p50_ms,
                    p99_ms=wrk.p99_ms,
                    errors=wrk.errors,
                    cpu_s=cpu,
                    rss_mb=process_rss_mb(server.pid),
                    sink=_delta(after, counts),
                    idle_cpu_ms_per_s=idle,
                )
            )
            counts = after
            # Paced.
            start: list[float] = []

            def mark_start(marks: list[float] = start) -> None:
                marks.append(process_cpu_seconds(server.pid))

            paced = run_paced(
                placement,
                server.url(endpoint),
                rate=options.rate,
                duration=options.duration,
                connections=options.connections,
                on_start=mark_start,
            )
            after = settle()
            cpu = process_cpu_seconds(server.pid) - start[0]
            samples.append(
                Sample(
                    config=config,
                    endpoint=endpoint,
                    load="paced",
                    round=round_index,
                    requests=int(paced["completed"]),
                    duration_s=float(paced["duration_s"]),
                    rps=float(paced["rate"]),
                    p50_ms=float(paced["p50_ms"]),
                    p99_ms=float(paced["p99_ms"]),
                    errors=int(paced["errors"]),
                    cpu_s=cpu,
                    rss_mb=process_rss_mb(server.pid),
                    sink=_delta(after, counts),
                    idle_cpu_ms_per_s=idle,
                )
            )
            counts = after
    finally:
        stop_process(server.process)
    return samples


def run_benchmark(options: Options) -> tuple[list[Sample], list[str]]:
    """Every configuration in every round; returns the samples and notes for the report."""
    unknown = [c for c in options.configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s): {', '.join(unknown)}; known: {list(CONFIGS)}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    placement = Placement.detect()
    notes: list[str] = []
    if placement.note:
        notes.append(placement.note)
        options.log(f"note: {placement.note}")
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        workdir = Path(tmp)
        database_url = options.database_url or sqlite_url(workdir)
        prepare_database(database_url)
        down_port = free_port()
        with sink_process(placement) as ports:
            for round_index in range(options.rounds):
                for config in options.configs:
                    began = time.monotonic()
                    got = measure_config(
                        config,
                        round_index,
                        options=options,
                        placement=placement,
                        ports=ports,
                        down_port=down_port,
                        database_url=database_url,
                        workdir=workdir,
                    )
                    samples.extend(got)
                    summary = ", ".join(
                        f"{s.endpoint}/{s.load[:3]} {s.rps:.0f} rps {s.cpu_us_per_request:.0f} µs"
                        for s in got
                    )
                    options.log(
                        f"round {round_index + 1}/{options.rounds} {config:<16} "
                        f"{time.monotonic() - began:5.1f}s  {summary}"
                    )
    for s in samples:
        if s.load == "paced" and s.rps < 0.95 * options.rate:
            notes.append(
                f"round {s.round + 1}: {s.config} /{s.endpoint} served {s.rps:.0f} of the "
                f"{options.rate:.0f} req/s asked in the paced phase (at or past saturation)"
            )
    return samples, notes


def describe_configs(names: Sequence[str]) -> str:
    return "\n".join(f"- `{n}`: {CONFIGS[n].description}" for n in names)
