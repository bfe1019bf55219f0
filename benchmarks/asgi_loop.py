"""The request path without a server: one configuration's ASGI app driven in-process.

``python -m benchmarks.asgi_loop --config bridge-prod --endpoint json --requests 3000``

No uvicorn, no sockets, no wrk: each request is one ``app(scope, receive, send)`` call on
one event loop, so what is measured is the telemetry's own per-request work (plus the app
and Starlette/FastAPI routing). Prints CPU µs per request (``time.process_time``, every
thread: the export threads are included, as in the benchmark), per batch of requests: the
quietest batch (``cpu_us_min``) is the least disturbed by other work on a shared machine
(but may hold no export); ``cpu_us_total`` counts every request and the exports of all
of their spans (the queue is flushed before it is read).
``--cprofile N`` prints the top N functions by own time; under ``valgrind
--tool=callgrind`` run it twice with different ``--requests`` and divide the difference of
the instruction counts by the difference of requests: instructions per request, repeatable
on a busy machine.

The sinks run in their own process (as in the benchmark); ``--sinks down`` points both
exporters at a port nobody listens on instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.app import CONFIGS, build_app, prepare_database, sqlite_url
from benchmarks.harness import ROOT, free_port, stop_process

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"wrk/4.1.0"),
    (b"accept", b"*/*"),
]


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(HEADERS),
        "state": {},
    }


async def _lifespan(app: Any) -> tuple[asyncio.Task[Any], asyncio.Queue[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    started = asyncio.Event()

    async def receive() -> Any:
        return await inbox.get()

    async def send(message: Any) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await asyncio.wait_for(started.wait(), 30)
    return task, inbox


async def _requests(app: Any, path: str, count: int) -> int:
    status = 0

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    for _ in range(count):
        # A task per request, as uvicorn runs each request (task factories run too).
        await asyncio.ensure_future(RequestResponseCycle(app, path, receive, send).run_asgi())
    return status


class RequestResponseCycle:
    """Named like uvicorn's: the coroutine of each request's task is ``run_asgi``, which is
    what a task factory sees under uvicorn."""

    def __init__(self, app: Any, path: str, receive: Any, send: Any) -> None:
        self.app, self.path, self.receive, self.send = app, path, receive, send

    async def run_asgi(self) -> None:
        await self.app(_scope(self.path), self.receive, self.send)


async def _run(args: argparse.Namespace, jaeger_url: str, dsn: str, database_url: str) -> None:
    bench = build_app(args.config, jaeger_url=jaeger_url, sentry_dsn=dsn, database_url=database_url)
    app = bench.app
    task, inbox = await _lifespan(app)
    path = "/" + args.endpoint
    status = await _requests(app, path, args.warmup)
    if status != 200:
        raise SystemExit(f"{path} answered {status}")
    bench.flush(30.0)  # the warm-up's spans are not exported on the measured CPU
    profiler = cProfile.Profile() if args.cprofile else None
    batches: list[float] = []
    per_batch = max(1, args.requests // args.batches)
    wall0 = time.perf_counter()
    total0 = time.process_time()
    if profiler is not None:
        profiler.enable()
    for _ in range(args.batches):
        cpu0 = time.process_time()
        await _requests(app, path, per_batch)
        batches.append((time.process_time() - cpu0) / per_batch * 1e6)
    # The spans still queued are exported (and their CPU counted) before the total is read:
    # a batch without an export is cheaper than one with, the total is not.
    bench.flush(30.0)
    if profiler is not None:
        profiler.disable()
    total = time.process_time() - total0
    wall = time.perf_counter() - wall0
    batches.sort()
    print(
        json.dumps(
            {
                "config": args.config,
                "endpoint": args.endpoint,
                "requests": per_batch * args.batches,
                # The quietest batch: on a shared machine noise only ever adds CPU time.
                "cpu_us_min": round(batches[0], 1),
                "cpu_us_median": round(batches[len(batches) // 2], 1),
                # Every request's CPU, exports included (the queue is flushed first).
                "cpu_us_total": round(total / (per_batch * args.batches) * 1e6, 1),
                "wall_us_per_request": round(wall / (per_batch * args.batches) * 1e6, 1),
            }
        )
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)
    bench.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi_loop")
    parser.add_argument("--config", default="bridge-prod", choices=list(CONFIGS))
    parser.add_argument("--endpoint", default="json", choices=["items", "json"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--batches", type=int, default=8, help="CPU is measured per batch")
    parser.add_argument("--cprofile", type=int, default=0, help="print the top N by own time")
    parser.add_argument("--sinks", choices=["up", "down"], default="up")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        database_url = sqlite_url(Path(tmp))
        prepare_database(database_url)
        sinks = None
        if args.sinks == "up":
            sinks = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.sinks"], cwd=ROOT, stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert sinks.stdout is not None
            ports = json.loads(sinks.stdout.readline())
            jaeger_url = f"http://127.0.0.1:{ports['otlp']}"
            dsn = f"http://benchkey@127.0.0.1:{ports['sentry']}/1"
        else:
            port = free_port()
            jaeger_url, dsn = f"http://127.0.0.1:{port}", f"http://benchkey@127.0.0.1:{port}/1"
        os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "500")
        try:
            asyncio.run(_run(args, jaeger_url, dsn, database_url))
        finally:
            if sinks is not None:
                stop_process(sinks, 5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
