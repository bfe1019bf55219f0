"""A paced (open-loop) HTTP load generator: ``wrk`` cannot pace and Debian has no ``wrk2``.

Request ``i`` is due at ``t0 + i / rate``; ``connections`` keep-alive connections take the
next due request as soon as they are free, and latency is measured from when the request
was *due*, not when it was sent (no coordinated omission: a stalled server shows up as
latency, not as a lower rate).

As a process (``python -m benchmarks.loadgen URL --rate R --duration S``) it opens its
connections, prints ``READY``, waits for a line on stdin, runs, and prints one JSON line,
so the harness can read the server's CPU time exactly around the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

__all__ = ["PacedResult", "percentile", "run_paced"]


@dataclass(frozen=True)
class PacedResult:
    requested: int
    completed: int
    errors: int
    duration_s: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run_paced(
    url: str,
    *,
    rate: float,
    duration: float,
    connections: int,
    ready: Callable[[], Awaitable[None]] | None = None,
) -> PacedResult:
    """Run the paced load; ``ready`` is awaited once the connections are open."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    total = max(1, int(rate * duration))
    loop = asyncio.get_running_loop()
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    if ready is not None:
        await ready()
    t0 = loop.time() + 0.01
    state = {"next": 0, "errors": 0}
    latencies: list[float] = []

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while state["next"] < total:
                index = state["next"]
                state["next"] += 1
                due = t0 + index / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    writer.write(request)
                    status = await _read_status(reader)
                except (ConnectionError, asyncio.IncompleteReadError):
                    state["errors"] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(loop.time() - due)
                if not 200 <= status < 300:
                    state["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(r, w) for r, w in streams))
    elapsed = loop.time() - t0
    return PacedResult(
        requested=total,
        completed=len(latencies),
        errors=state["errors"],
        duration_s=round(elapsed, 3),
        rate=round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        max_ms=round(max(latencies, default=0.0) * 1000, 3),
    )


async def _main(args: argparse.Namespace) -> PacedResult:
    async def ready() -> None:
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    return await run_paced(
        args.url,
        rate=args.rate,
        duration=args.duration,
        connections=args.connections,
        ready=ready,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    result = asyncio.run(_main(parser.parse_args()))
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
