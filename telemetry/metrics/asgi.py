"""The request side of the metrics: the pure-ASGI middleware that times every request and
serves ``/metrics``. It records into anything shaped like :class:`RequestMetrics`
(``TelemetryMetrics`` installs it), so it never imports the registry.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Protocol

from telemetry.metrics.cardinality import normalize_method
from telemetry.metrics.exemplars import current_exemplar, kept_exemplar
from telemetry.shared import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MetricsMiddleware", "RequestMetrics"]


class RequestMetrics(Protocol):
    """What the middleware records into (``TelemetryMetrics``)."""

    path: str
    exemplars_for: str

    def in_progress(self, method: str) -> Any: ...
    def route_template(self, scope: Scope, root_path: str, app: Any) -> str: ...
    def record_request(
        self, method: str, route: str, status_code: str, duration_s: float,
        exemplar: dict[str, str] | None = None, exception_type: str | None = None,
    ) -> None: ...  # fmt: skip
    def render(self, accept: str | None) -> tuple[bytes, str]: ...


class MetricsMiddleware:
    """Pure ASGI: it only watches ``http.response.start`` go by, so streaming responses stay
    streaming, and costs two clock reads, a few dict lookups and the metric updates.

    It runs inside OpenTelemetry's server span (FastAPIInstrumentor wraps the whole middleware
    stack), so the current span is the request's span, and inside Starlette's
    ``ServerErrorMiddleware``, so unhandled exceptions pass through it before becoming 500s.
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        root_path = str(scope.get("root_path", ""))
        path = scope["path"]
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        if path == metrics.path:
            await _serve_metrics(metrics, scope, send)
            return
        outer_app = scope.get("app")
        method = normalize_method(scope["method"])
        in_progress = metrics.in_progress(method)
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress.inc()
        start = perf_counter()
        failure: BaseException | None = None
        exception_type: str | None = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            duration = perf_counter() - start
            in_progress.dec()
            if isinstance(failure, Exception):
                # Counted as a 500 even when a streamed response had already started: the
                # client got a truncated body, which is a failed request.
                code, exception_type = "500", type(failure).__qualname__
            elif failure is not None:
                code = "499"  # cancelled: the client or the server went away
            else:
                # An app that returns without responding gets a 500 from the server.
                code = str(status) if status else "500"
            route = metrics.route_template(scope, root_path, outer_app)
            exemplar = (
                current_exemplar() if metrics.exemplars_for == "sampled" else kept_exemplar(code)
            )
            metrics.record_request(method, route, code, duration, exemplar, exception_type)


async def _serve_metrics(metrics: RequestMetrics, scope: Scope, send: Send) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _respond(send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET, HEAD")])
        return
    accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
    import anyio.to_thread  # here, not at the top: anyio comes with Starlette/httpx, not core

    # Collection reads every metric (and, in multiprocess mode, every worker's files): keep it
    # off the event loop so a scrape never stalls requests.
    body, content_type = await anyio.to_thread.run_sync(metrics.render, accept)
    await _respond(
        send, 200, b"" if scope["method"] == "HEAD" else body, content_type, [], len(body)
    )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]],
    length: int | None = None,
) -> None:
    size = str(len(body) if length is None else length).encode()
    headers = [(b"content-type", content_type.encode()), (b"content-length", size), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
