"""Mixed, realistic traffic against the demo API: `python -m demo.loadgen`.

Reads, writes, agent executions, crashes, handled errors, slow calls, 401/404/422s, in
proportions that look like a service on a normal day with a few bad moments. Progress goes to
stderr, the summary (status mix, p50/p95/p99 latency) to stdout. Exit code 0 unless the
target is unreachable (2).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from demo.config import BUILTIN_API_KEYS

AGENTS = "/api/v1/agents"
MODELS = ("claude-3-haiku", "claude-3-sonnet", "gpt-4o-mini", "llama-3-8b")
PROMPTS = (
    "Summarise the open incidents for the on-call handover.",
    "Draft a reply to the customer about the delayed refund.",
    "Which of our agents used the most tokens last week?",
    "Plan the migration of the billing workflow to the new queue.",
)


@dataclass
class Result:
    scenario: str
    status: int | None  # None: the request never got an HTTP answer
    seconds: float
    error: str | None = None  # the transport error's type when status is None


@dataclass
class LoadSummary:
    results: list[Result] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def transport_errors(self) -> int:
        return sum(1 for r in self.results if r.status is None)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds."""
        latencies = sorted(r.seconds for r in self.results if r.status is not None)
        if not latencies:
            return 0.0
        rank = max(1, min(len(latencies), math.ceil(q / 100 * len(latencies))))
        return latencies[rank - 1]

    def render(self) -> str:
        total = len(self.results)
        statuses = Counter(r.status for r in self.results if r.status is not None)
        classes = Counter(f"{status // 100}xx" for status in statuses.elements())
        rate = total / self.elapsed if self.elapsed > 0 else 0.0
        scenarios = Counter(r.scenario for r in self.results)
        errors = Counter(f"{r.scenario}/{r.error}" for r in self.results if r.status is None)
        error_detail = ", ".join(f"{k} {v}" for k, v in errors.most_common())
        return "\n".join(
            [
                f"requests   {total} in {self.elapsed:.1f} s ({rate:.1f} req/s), "
                f"{self.transport_errors} transport errors"
                + (f" ({error_detail})" if error_detail else ""),
                "status     "
                + " · ".join(f"{k} {v}" for k, v in sorted(classes.items()))
                + "   ("
                + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
                + ")",
                f"latency    p50 {self.percentile(50) * 1000:.1f} ms · "
                f"p95 {self.percentile(95) * 1000:.1f} ms · "
                f"p99 {self.percentile(99) * 1000:.1f} ms",
                "scenarios  " + ", ".join(f"{k} {v}" for k, v in scenarios.most_common()),
            ]
        )


class TargetUnreachable(RuntimeError):
    pass


@dataclass
class LoadState:
    """Agents known per API key (agents are tenant-scoped), shared by all workers."""

    keys: list[str]
    rng: random.Random
    agents: dict[str, list[int]] = field(default_factory=dict)

    def key(self) -> str:
        return self.rng.choice(self.keys)

    def agent_of(self, key: str) -> int | None:
        pool = self.agents.get(key)
        return self.rng.choice(pool) if pool else None


Scenario = Callable[[httpx.AsyncClient, LoadState], Awaitable[httpx.Response]]


def _headers(key: str, *, expect_500: bool = False) -> dict[str, str]:
    headers = {"X-API-Key": key}
    if expect_500:
        # uvicorn closes the connection after an unhandled exception, without saying so in
        # the response; a pooled client would then reuse a dead socket (ReadError). Asking
        # for the close up front keeps the connection out of the pool.
        headers["Connection"] = "close"
    return headers


async def create_agent(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    key = state.key()
    body = {
        "name": f"agent-{state.rng.randrange(10_000)}",
        "model": state.rng.choice(MODELS),
        "instructions": "You are a helpful operations assistant.",
    }
    response = await client.post(AGENTS, json=body, headers=_headers(key))
    if response.status_code == 201:
        state.agents.setdefault(key, []).append(int(response.json()["id"]))
    return response


async def list_agents(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    return await client.get(AGENTS, params={"limit": 20}, headers=_headers(state.key()))


async def get_agent(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    key = state.key()
    agent_id = state.agent_of(key)
    if agent_id is None:
        return await create_agent(client, state)
    return await client.get(f"{AGENTS}/{agent_id}", headers=_headers(key))


async def update_agent(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    key = state.key()
    agent_id = state.agent_of(key)
    if agent_id is None:
        return await create_agent(client, state)
    body = {"instructions": f"Revision {state.rng.randrange(100)}: be concise."}
    return await client.patch(f"{AGENTS}/{agent_id}", json=body, headers=_headers(key))


async def delete_agent(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    key = state.key()
    pool = state.agents.get(key, [])
    if len(pool) <= 3:  # keep a few agents around for reads and executions
        return await create_agent(client, state)
    agent_id = pool.pop()
    return await client.delete(f"{AGENTS}/{agent_id}", headers=_headers(key))


async def execute(client: httpx.AsyncClient, state: LoadState, *, fail: bool) -> httpx.Response:
    key = state.key()
    agent_id = state.agent_of(key)
    if agent_id is None:
        return await create_agent(client, state)
    body: dict[str, object] = {"agent_id": agent_id, "input": state.rng.choice(PROMPTS)}
    if fail:
        body["simulate"] = "provider_unavailable"
    headers = _headers(key, expect_500=fail)
    return await client.post(f"{AGENTS}/execute", json=body, headers=headers)


async def execute_ok(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    return await execute(client, state, fail=False)


async def execute_provider_down(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    return await execute(client, state, fail=True)


async def crash(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    headers = _headers(state.key(), expect_500=True)
    return await client.get("/api/v1/debug/crash", headers=headers)


async def handled_error(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    body = {"quota": state.rng.choice(["ten", "n/a", "∞"])}
    return await client.post("/api/v1/debug/handled", json=body, headers=_headers(state.key()))


async def slow(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    params = {"ms": state.rng.randrange(200, 900)}
    return await client.get("/api/v1/debug/slow", params=params, headers=_headers(state.key()))


async def not_found(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    missing = 10_000_000 + state.rng.randrange(1_000)
    return await client.get(f"{AGENTS}/{missing}", headers=_headers(state.key()))


async def invalid(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    body = {"name": "", "model": "not-a-model"}
    return await client.post(AGENTS, json=body, headers=_headers(state.key()))


async def unauthorized(client: httpx.AsyncClient, state: LoadState) -> httpx.Response:
    return await client.get(AGENTS, headers={"X-API-Key": "revoked-key"})


# (scenario, weight): mostly reads, a steady share of executions, a few of each failure.
MIX: list[tuple[Scenario, int]] = [
    (list_agents, 20),
    (get_agent, 22),
    (create_agent, 8),
    (update_agent, 5),
    (delete_agent, 2),
    (execute_ok, 16),
    (execute_provider_down, 2),
    (crash, 2),
    (handled_error, 3),
    (slow, 3),
    (not_found, 6),
    (invalid, 3),
    (unauthorized, 2),
]


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int | None, duration: float | None, enabled: bool) -> None:
        self.total, self.duration, self.enabled = total, duration, enabled
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, summary: LoadSummary, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._last < (0.1 if self.tty else 2.0)):
            return
        self._last = now
        done = len(summary.results)
        elapsed = now - self.started
        if self.total:
            fraction = done / self.total
        else:
            fraction = elapsed / self.duration if self.duration else 1.0
        fraction = min(1.0, fraction)
        bar = "#" * int(fraction * 30)
        errors = sum(1 for r in summary.results if r.status is None or r.status >= 500)
        line = (
            f"[{bar:<30}] {fraction:4.0%} {done} req "
            f"{done / elapsed if elapsed else 0:5.1f} req/s  5xx/errors {errors}"
        )
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        if final and self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def run_load(
    base_url: str,
    *,
    requests: int | None = None,
    duration: float | None = None,
    concurrency: int = 8,
    api_keys: list[str] | None = None,
    seed: int | None = None,
    progress: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadSummary:
    """Send the mix until `requests` are done or `duration` seconds have passed.

    `transport` replaces the network (tests drive an in-process app through it).
    """
    if requests is None and duration is None:
        raise ValueError("give requests or duration")
    state = LoadState(keys=api_keys or list(BUILTIN_API_KEYS), rng=random.Random(seed))
    scenarios = [scenario for scenario, _ in MIX]
    weights = [weight for _, weight in MIX]
    summary = LoadSummary()
    bar = Progress(requests, duration, progress)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=15.0, limits=limits, transport=transport
    ) as client:
        try:
            await client.get("/health/live", timeout=3.0)
        except httpx.TransportError as exc:
            raise TargetUnreachable(f"{base_url} is unreachable: {exc!r}") from exc
        started = time.monotonic()
        deadline = started + duration if duration is not None else None
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while True:
                if requests is not None and issued >= requests:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                issued += 1
                scenario = state.rng.choices(scenarios, weights)[0]
                t0 = time.perf_counter()
                status: int | None = None
                error: str | None = None
                try:
                    status = (await scenario(client, state)).status_code
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                summary.results.append(
                    Result(scenario.__name__, status, time.perf_counter() - t0, error)
                )
                bar.update(summary)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        summary.elapsed = time.monotonic() - started
    bar.update(summary, final=True)
    if summary.results and summary.transport_errors == len(summary.results):
        raise TargetUnreachable(f"{base_url} stopped answering: every request failed")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.loadgen", description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--duration", type=float, help="seconds to run (default 30)")
    limit.add_argument("--requests", type=int, help="number of requests to send")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="X-API-Key to use (repeatable; default: the built-in demo keys)",
    )
    parser.add_argument("--seed", type=int, help="random seed, for a reproducible mix")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.duration is None and args.requests is None:
        args.duration = 30.0
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = asyncio.run(
            run_load(
                args.base_url,
                requests=args.requests,
                duration=args.duration,
                concurrency=args.concurrency,
                api_keys=args.api_keys,
                seed=args.seed,
                progress=not args.no_progress,
            )
        )
    except TargetUnreachable as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(summary.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
