"""The request side of the metrics: the pure-ASGI middleware that times every request and
serves ``/metrics``, and the trace exemplar a request's observations carry.

:class:`telemetry.metrics.TelemetryMetrics` owns the metrics and installs this middleware;
everything here is re-exported from ``telemetry.metrics``, the one import path.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from opentelemetry.trace import get_current_span

from telemetry.metrics.cardinality import normalize_method
from telemetry.shared import KEEP_ATTRIBUTE, ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from telemetry.metrics.registry import TelemetryMetrics

__all__ = ["MetricsMiddleware", "current_exemplar", "kept_exemplar"]


def current_exemplar() -> dict[str, str] | None:
    """``{trace_id, span_id}`` of the current span, only when it is valid and sampled: an
    exemplar of an unsampled span would point at a trace that was never stored."""
    context = get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }



def kept_exemplar(status_code: str) -> dict[str, str] | None:
    """The exemplar of a request whose trace a tail sampler is sure to keep: a server error
    (its span has error status), or a span marked ``telemetry.keep`` (critical routes)."""
    exemplar = current_exemplar()
    if exemplar is None or status_code.startswith("5"):
        return exemplar
    attributes = getattr(get_current_span(), "attributes", None) or {}
    return exemplar if attributes.get(KEEP_ATTRIBUTE) else None


class MetricsMiddleware:
    """Pure ASGI: it only watches ``http.response.start`` go by, so streaming responses stay
    streaming, and costs two clock reads, a few dict lookups and the metric updates.

    It runs inside OpenTelemetry's server span (FastAPIInstrumentor wraps the whole middleware
    stack), so the current span is the request's span, and inside Starlette's
    ``ServerErrorMiddleware``, so unhandled exceptions pass through it before becoming 500s.
    """

    def __init__(self, app: ASGIApp, metrics: TelemetryMetrics) -> None:
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
        in_progress = metrics._child(metrics._in_progress, (metrics.service, method))
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
            route = metrics._routes.template(scope, root_path, outer_app)
            exemplar = (
                current_exemplar() if metrics.exemplars_for == "sampled" else kept_exemplar(code)
            )
            metrics.record_request(method, route, code, duration, exemplar, exception_type)


async def _serve_metrics(metrics: TelemetryMetrics, scope: Scope, send: Send) -> None:
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
