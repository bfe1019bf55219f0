"""One server span per request, named by the same route template as the metrics.

FastAPI >= 0.142 has telemetry of its own and starts it whenever a global provider is set.
It steps aside for the contrib middleware it finds in its *own* stack, but a FastAPI app
mounted under another app has no contrib middleware: it opened a second server span, and
contrib named the outer span after the mount (``http.route=/v2``) where the metrics say
``/v2/things/{tid}``. :class:`ServerSpanRoute` sits inside the server span (innermost of
the app's middleware) and fixes both, whichever path made the span:

* ``contrib``: it marks the request as observed for FastAPI (``scope["fastapi.telemetry"]``,
  the key FastAPI itself uses to keep mounted apps quiet), so mounted FastAPI apps open no
  span of their own;
* either path: once the router has matched (at the response start, or when the app raises)
  the span's ``http.route`` and name take the template the metrics record.

:func:`use_native_telemetry` is the ``native`` path: FastAPI's own server span and its
operation spans (dependencies, endpoint, serialization, background tasks), on the bridge's
provider.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from telemetry.shared import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RouteOf", "ServerSpanRoute", "native_telemetry_supported", "use_native_telemetry"]

logger = logging.getLogger("telemetry.instrumentation")

#: (scope after routing, the scope's root_path when the app was entered, that app) ->
#: the route template, or None when nothing matched.
RouteOf = Callable[[MutableMapping[str, Any], str, Any], str | None]

_FASTAPI_KEY = "fastapi.telemetry"


class ServerSpanRoute:
    """Pure ASGI: costs a dict lookup on the way in and one route lookup per response."""

    def __init__(self, app: ASGIApp, route_of: RouteOf, *, quiet_mounted_apps: bool) -> None:
        self.app = app
        self.route_of = route_of
        self.quiet_mounted_apps = quiet_mounted_apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        claimed = self.quiet_mounted_apps and _FASTAPI_KEY not in scope
        if claimed:
            scope[_FASTAPI_KEY] = None
        span = trace.get_current_span()
        if not span.is_recording() and scope.get(_FASTAPI_KEY) is None:
            # An unsampled request without FastAPI's native span: nothing to name.
            try:
                await self.app(scope, receive, send)
            finally:
                if claimed:
                    scope.pop(_FASTAPI_KEY, None)
            return
        root_path = str(scope.get("root_path", ""))
        outer_app = scope.get("app")
        named = False

        def name_span() -> None:
            nonlocal named
            if named:
                return
            named = True
            route = self.route_of(scope, root_path, outer_app)
            if route is None:
                return
            native = scope.get(_FASTAPI_KEY)
            if native is not None and hasattr(native, "route"):
                # FastAPI's native span takes its route from here when it ends (and its
                # duration metric too); its own template drops Starlette's convertors.
                native.route = route
            if span.is_recording():
                name = str(getattr(span, "name", "") or scope.get("method", "HTTP"))
                span.set_attribute("http.route", route)
                span.update_name(f"{name.split(' ', 1)[0]} {route}")

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                name_span()
            await send(message)

        try:
            await self.app(scope, receive, send_named)
        finally:
            name_span()
            if claimed:
                scope.pop(_FASTAPI_KEY, None)


def native_telemetry_supported(app: Any) -> bool:
    """Whether ``app`` is a FastAPI application with native telemetry (FastAPI >= 0.142)."""
    try:
        from fastapi import FastAPI
    except ImportError:
        return False
    return isinstance(app, FastAPI) and "telemetry" in inspect.signature(FastAPI).parameters


def use_native_telemetry(
    app: Any, provider: TracerProvider, *, is_excluded: Callable[[str], bool]
) -> None:
    """FastAPI's own telemetry on the bridge's provider, excluded routes left out.

    FastAPI takes its configuration at construction (``FastAPI(telemetry={...})``) and uses
    the global providers by default; the app exists already, so what the app did not set
    itself is filled in its configuration (the bridge's provider, the exclusion rule).
    """
    config = getattr(app, "_telemetry", None)
    if not isinstance(config, dict):
        raise RuntimeError("this FastAPI version keeps its telemetry configuration elsewhere")
    if not config.get("tracing", True):
        logger.warning(
            "telemetry_fastapi_native_tracing_off: the app passed telemetry={'tracing': False} "
            "to FastAPI(); its requests get no server span"
        )
    if config.get("tracer_provider") is None and trace.get_tracer_provider() is not provider:
        config["tracer_provider"] = provider
    if config.get("exclude") is None:

        def exclude(scope: MutableMapping[str, Any]) -> bool:
            path = str(scope.get("path", ""))
            root_path = str(scope.get("root_path", ""))
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            return is_excluded(path)

        config["exclude"] = exclude
