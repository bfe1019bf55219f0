"""Latency of every outgoing HTTP call, SQL statement and redis command, sampled or not.

Why not OpenTelemetry's instrumentor hooks: the httpx hooks do run for unsampled
(non-recording) spans, but the response hook never runs when the call fails without a
response (connection refused, timeout), and the redis instrumentor calls no request hook for
pipelines. Both would undercount exactly the calls a dependency dashboard is about. So:

* SQLAlchemy: ``before/after_cursor_execute`` and ``handle_error`` listeners on the ``Engine``
  class, which covers every engine, made before or after setup, sync or async (an
  ``AsyncEngine`` runs on a sync ``Engine``); two cheap function calls per statement.
* httpx: a wrapper around ``HTTPTransport.handle_request`` and
  ``AsyncHTTPTransport.handle_async_request``, the same methods OTel's instrumentor wraps.
  The duration runs to the response headers (a streamed body is the caller's time).
* redis: wrappers around ``execute_command``, pipeline ``execute`` and
  ``immediate_execute_command`` (sync and asyncio clients; cluster clients are not covered).

The wrappers are installed once per process and never removed: :func:`uninstrument` only
detaches the recording ``TelemetryMetrics``, which turns them into a plain call. They always
sit innermost, below OTel's wrapt proxies whatever the order of installation, because OTel's
``uninstrument`` replaces the outermost wrapper by what it wraps.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from telemetry.metrics.cardinality import sql_operation

__all__ = [
    "DependencyBreadcrumbs",
    "DependencyMetrics",
    "instrument",
    "record_breadcrumbs",
    "stop_breadcrumbs",
    "uninstrument",
]


class DependencyMetrics(Protocol):
    """What dependency calls are recorded into (``TelemetryMetrics``)."""

    def record_http_client(
        self, method: str, peer: str, status_code: str, duration_s: float
    ) -> None: ...
    def record_db(self, system: str, operation: str, duration_s: float) -> None: ...


class DependencyBreadcrumbs(Protocol):
    """What leaves a breadcrumb per dependency call (the Sentry side, wired by setup)."""

    def http(self, method: str, url: str, status: int | None) -> None: ...
    def sql(self, statement: str, system: str) -> None: ...
    def redis(self, args: tuple[Any, ...]) -> None: ...


Recorder = Callable[[Any, tuple[Any, ...], Any, "BaseException | None", float], None]
WrapperFactory = Callable[[Callable[..., Any]], Callable[..., Any]]

_MARK = "_telemetry_dependency_metrics"
_START = "_telemetry_metrics_start"


class _Active:
    """Where dependency calls are recorded: the metrics (the most recently instrumented
    instance) and the Sentry breadcrumbs of the current request."""

    metrics: DependencyMetrics | None = None
    breadcrumbs: DependencyBreadcrumbs | None = None

    @classmethod
    def idle(cls) -> bool:
        return cls.metrics is None and cls.breadcrumbs is None


def instrument(metrics: DependencyMetrics) -> list[str]:
    """Record dependency calls into ``metrics``; returns the libraries that were found."""
    _Active.metrics = metrics
    return _install()


def record_breadcrumbs(breadcrumbs: DependencyBreadcrumbs) -> list[str]:
    """Leave a Sentry breadcrumb per dependency call; returns the libraries found."""
    _Active.breadcrumbs = breadcrumbs
    return _install()


def stop_breadcrumbs() -> None:
    _Active.breadcrumbs = None


def _install() -> list[str]:
    done = []
    for name, install in (("httpx", _httpx), ("sqlalchemy", _sqlalchemy), ("redis", _redis)):
        try:
            install()
        except ImportError:
            continue
        done.append(name)
    return done


def uninstrument(metrics: DependencyMetrics | None = None) -> None:
    """Stop recording (into ``metrics`` only, when given)."""
    if metrics is None or _Active.metrics is metrics:
        _Active.metrics = None


def _patched(function: Any) -> bool:
    # Walk the wrapper chain: OTel's wrapt wrappers expose what they wrap as __wrapped__.
    while function is not None:
        if getattr(function, _MARK, False):
            return True
        function = getattr(function, "__wrapped__", None)
    return False


def _patch(owner: Any, attribute: str, make: Callable[[Any], Any]) -> None:
    current = inspect.getattr_static(owner, attribute)
    if _patched(current):
        return
    # Slide in below any wrapt proxies already there (OTel's instrumentors): OTel's uninstrument
    # replaces the outermost proxy by what it wraps, so ours must never be the outermost.
    # type(), not isinstance(): wrapt proxies pass isinstance checks for what they wrap.
    proxy, target = None, current
    while type(target) is not types.FunctionType and hasattr(target, "__wrapped__"):
        proxy, target = target, target.__wrapped__
    wrapper = make(target)
    functools.update_wrapper(wrapper, target)
    setattr(wrapper, _MARK, True)
    if proxy is None:
        setattr(owner, attribute, wrapper)
    else:
        proxy.__wrapped__ = wrapper


def _sync_timed(record: Recorder) -> WrapperFactory:
    """Wrapper factory: time the call and hand (instance, args, result, error, seconds) over."""

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _Active.idle():
                return original(self, *args, **kwargs)
            start = perf_counter()
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                record(self, args, None, exc, perf_counter() - start)
                raise
            record(self, args, result, None, perf_counter() - start)
            return result

        return wrapper

    return make


def _async_timed(record: Recorder) -> WrapperFactory:
    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _Active.idle():
                return await original(self, *args, **kwargs)
            start = perf_counter()
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as exc:
                record(self, args, None, exc, perf_counter() - start)
                raise
            record(self, args, result, None, perf_counter() - start)
            return result

        return wrapper

    return make


# -- httpx ------------------------------------------------------------------------------------


def _record_httpx(
    _: Any, args: tuple[Any, ...], response: Any, error: BaseException | None, seconds: float
) -> None:
    if not args:
        return
    request = args[0]
    metrics = _Active.metrics
    if metrics is not None:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        status = str(response.status_code) if error is None else "error"
        metrics.record_http_client(request.method, f"{url.host}:{port}", status, seconds)
    breadcrumbs = _Active.breadcrumbs
    if breadcrumbs is not None:
        code = response.status_code if error is None else None
        breadcrumbs.http(request.method, str(request.url), code)


def _httpx() -> None:
    httpx = importlib.import_module("httpx")
    _patch(httpx.HTTPTransport, "handle_request", _sync_timed(_record_httpx))
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", _async_timed(_record_httpx))


# -- redis ------------------------------------------------------------------------------------


def _record_redis_command(
    _: Any, args: tuple[Any, ...], __: Any, ___: BaseException | None, seconds: float
) -> None:
    if not args:
        return
    metrics = _Active.metrics
    if metrics is not None:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        metrics.record_db("redis", name.split(" ", 1)[0].upper(), seconds)
    breadcrumbs = _Active.breadcrumbs
    if breadcrumbs is not None:
        breadcrumbs.redis(args)


def _record_redis_pipeline(
    pipeline: Any, _: tuple[Any, ...], __: Any, ___: BaseException | None, seconds: float
) -> None:
    metrics = _Active.metrics
    if metrics is not None:
        # One round trip of many commands: one observation, named after what it is.
        # The asyncio pipeline's flag is `is_transaction` (its `transaction` is a method).
        multi = getattr(pipeline, "is_transaction", None)
        if multi is None:
            multi = getattr(pipeline, "transaction", False)
        metrics.record_db("redis", "MULTI" if multi else "PIPELINE", seconds)


def _redis() -> None:
    client = importlib.import_module("redis.client")
    _patch(client.Redis, "execute_command", _sync_timed(_record_redis_command))
    _patch(client.Pipeline, "immediate_execute_command", _sync_timed(_record_redis_command))
    _patch(client.Pipeline, "execute", _sync_timed(_record_redis_pipeline))
    aclient = importlib.import_module("redis.asyncio.client")
    _patch(aclient.Redis, "execute_command", _async_timed(_record_redis_command))
    _patch(aclient.Pipeline, "immediate_execute_command", _async_timed(_record_redis_command))
    # Pipeline.execute_command only queues (or defers to immediate_execute_command while
    # WATCHing): the methods patched here are the ones that talk to the server, once each.
    _patch(aclient.Pipeline, "execute", _async_timed(_record_redis_pipeline))


# -- SQLAlchemy -------------------------------------------------------------------------------


def _before_cursor_execute(
    conn: Any, _cursor: Any, _statement: str, _parameters: Any, _context: Any, _executemany: bool
) -> None:
    if not _Active.idle():
        conn.info[_START] = perf_counter()


def _after_cursor_execute(
    conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _executemany: bool
) -> None:
    _finish_statement(conn, statement)


def _handle_error(exception_context: Any) -> None:
    conn = exception_context.connection
    if conn is not None and exception_context.statement is not None:
        _finish_statement(conn, exception_context.statement)


def _finish_statement(conn: Any, statement: str) -> None:
    start = conn.info.pop(_START, None)
    if start is None:
        return
    metrics = _Active.metrics
    if metrics is not None:
        metrics.record_db(conn.dialect.name, sql_operation(statement), perf_counter() - start)
    breadcrumbs = _Active.breadcrumbs
    if breadcrumbs is not None:
        breadcrumbs.sql(statement, conn.dialect.name)


def _sqlalchemy() -> None:
    event = importlib.import_module("sqlalchemy.event")
    engine_class = importlib.import_module("sqlalchemy.engine").Engine
    for name, listener in (
        ("before_cursor_execute", _before_cursor_execute),
        ("after_cursor_execute", _after_cursor_execute),
        ("handle_error", _handle_error),
    ):
        if not event.contains(engine_class, name, listener):
            event.listen(engine_class, name, listener)
