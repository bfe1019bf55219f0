"""Where the CPU of a configuration goes: py-spy on the running server under load.

``python -m benchmarks.profile --config bridge-otlp --endpoint items --duration 15``
starts the sinks and the server of that configuration exactly as the benchmark does,
loads it (``--load saturation`` with wrk, or ``paced``), samples every thread with
``py-spy record --pid`` (non-blocking, on the load core), and prints:

* CPU samples per thread (request handling vs export threads vs profiler thread);
* self samples by *owner*: the innermost frame that is not the standard library, grouped by
  package (``telemetry``, ``sentry_sdk``, ``opentelemetry.sdk``, ``starlette`` ...), so a
  ``json.dumps`` called by sentry-sdk counts as sentry-sdk's;
* inclusive samples by component (a stack counts once for every component in it);
* the top functions by self samples.

The raw collapsed stacks are kept (``--output``) for a flame graph.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.app import CONFIGS, prepare_database, sqlite_url
from benchmarks.harness import (
    Placement,
    free_port,
    run_paced,
    run_wrk,
    sink_process,
    sink_targets,
    start_server,
    stop_process,
)

__all__ = ["Profile", "component_of", "parse_collapsed"]

_STACK_LINE = re.compile(r"^thread \((?P<tid>\d+)\): (?P<rest>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")
_STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages/)")


def component_of(path: str) -> str | None:
    """The package a source file belongs to (None for the standard library)."""
    if "/site-packages/" in path:
        parts = path.split("/site-packages/", 1)[1].split("/")
        top = parts[0].removesuffix(".py")
        if top == "opentelemetry" and len(parts) > 2:
            second = parts[1]
            if second in ("instrumentation", "exporter") and len(parts) > 3:
                return f"opentelemetry.{second}.{parts[2]}"
            return f"opentelemetry.{second}"
        return top
    if _STDLIB.search(path):
        return None
    if "/telemetry/" in path:
        return "telemetry (bridge)"
    if "/benchmarks/" in path:
        return "benchmark app"
    return path


def _stdlib_module(path: str) -> str:
    match = _STDLIB.search(path)
    tail = path[match.end() :] if match else path
    return "stdlib:" + tail.split("/")[0].removesuffix(".py")


@dataclass
class Profile:
    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)


def _thread_kind(name: str) -> str:
    return re.sub(r"[\s_-]*\(?\d+\)?$", "", name).strip() or name


def parse_collapsed(lines: list[str]) -> Profile:
    """Aggregate py-spy's raw (collapsed) output, recorded with ``--threads
    --full-filenames --nolineno``."""
    profile = Profile()
    for line in lines:
        match = _STACK_LINE.match(line.strip())
        if match is None:
            continue
        count = int(match.group("count"))
        thread, *frames = match.group("rest").split(";")
        profile.total += count
        profile.threads[_thread_kind(thread)] += count
        parsed = [m for m in (_FRAME.match(f) for f in frames) if m is not None]
        if not parsed:
            continue
        leaf = parsed[-1]
        profile.functions[f"{leaf.group('function')} ({_short(leaf.group('file'))})"] += count
        owner: str | None = None
        for frame in reversed(parsed):
            owner = component_of(frame.group("file"))
            if owner is not None:
                break
        profile.owners[owner or _stdlib_module(leaf.group("file"))] += count
        seen = {component_of(f.group("file")) for f in parsed} - {None}
        for component in seen:
            assert component is not None
            profile.inclusive[component] += count
    return profile


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def render(profile: Profile, title: str, top: int = 25) -> str:
    def table(counter: Counter[str], heading: str, limit: int) -> list[str]:
        rows = [f"\n{heading}", f"{'samples':>8} {'share':>6}  name"]
        for name, count in counter.most_common(limit):
            rows.append(f"{count:>8} {100 * count / max(profile.total, 1):5.1f}%  {name}")
        return rows

    lines = [f"## {title}: {profile.total} CPU samples holding the GIL"]
    lines += table(profile.threads, "by thread", 12)
    lines += table(profile.owners, "self, by owner (innermost non-stdlib frame)", 20)
    lines += table(profile.inclusive, "inclusive, by component", 20)
    lines += table(profile.functions, "top functions (self)", top)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--config", default="bridge-otlp", choices=list(CONFIGS))
    parser.add_argument("--endpoint", default="items", choices=["items", "json"])
    parser.add_argument("--load", default="paced", choices=["paced", "saturation"])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sample-rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument("--output", type=Path, default=None, help="keep the raw stacks here")
    args = parser.parse_args(argv)

    placement = Placement.detect()
    with tempfile.TemporaryDirectory(prefix="telemetry-profile-") as tmp:
        workdir = Path(tmp)
        database_url = sqlite_url(workdir)
        prepare_database(database_url)
        raw = args.output or workdir / "stacks.txt"
        with sink_process(placement) as ports:
            jaeger_url, sentry_dsn = sink_targets(args.config, ports, free_port())
            server = start_server(
                args.config,
                placement=placement,
                jaeger_url=jaeger_url,
                sentry_dsn=sentry_dsn,
                database_url=database_url,
                workdir=workdir,
                flush_timeout=5.0,
            )
            try:
                url = server.url(args.endpoint)
                run_wrk(placement, url, duration=1, connections=4)
                spy = subprocess.Popen(
                    [
                        *placement.load,
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(server.pid),
                        "--duration",
                        str(int(args.duration)),
                        "--rate",
                        str(args.sample_rate),
                        "--format",
                        "raw",
                        "--threads",
                        "--full-filenames",
                        "--nolineno",
                        "--nonblocking",
                        "--gil",
                        "--output",
                        str(raw),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                threading.Event().wait(0.5)  # py-spy attached
                if args.load == "saturation":
                    result = run_wrk(
                        placement, url, duration=args.duration, connections=args.connections
                    )
                    served = f"{result.requests} requests, {result.rps:.0f} req/s"
                else:
                    paced = run_paced(
                        placement,
                        url,
                        rate=args.rate,
                        duration=args.duration,
                        connections=args.connections,
                        on_start=lambda: None,
                    )
                    served = f"{paced['completed']} requests, {paced['rate']} req/s"
                _, errors = spy.communicate(timeout=args.duration + 60)
                if spy.returncode != 0:
                    print(errors, file=sys.stderr)
                    return 1
            finally:
                stop_process(server.process)
        profile = parse_collapsed(raw.read_text().splitlines())
        title = f"{args.config} /{args.endpoint} {args.load} ({served})"
        print(render(profile, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
