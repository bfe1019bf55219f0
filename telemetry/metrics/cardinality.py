"""Label values with a bounded number of distinct values.

Every label value the metrics module records goes through here: HTTP methods are folded onto
the standard verbs, routes are route templates (never raw paths), and each (metric, label)
pair keeps at most N distinct values, past which the value becomes ``<overflow>``. A scan of
10,000 random URLs therefore adds a constant number of series instead of 10,000.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

UNMATCHED = "<unmatched>"
OVERFLOW = "<overflow>"
OTHER_METHOD = "OTHER"

# RFC 9110 methods plus PATCH (RFC 5789) and QUERY (the safe-method draft FastAPI routes):
# anything else a client invents is folded into one value instead of one series each.
STANDARD_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"}
)

# Bounds per label name. Routes are bounded by the application's own route table, so 100 only
# bites when something feeds raw paths in (a mount with a parameter in its prefix, host routes).
DEFAULT_LABEL_LIMITS: Mapping[str, int] = {
    "route": 100,
    "status_code": 40,
    "exception_type": 50,
    "peer": 100,
    "operation": 40,
    "system": 10,
    "sink": 10,
    "kind": 20,
    "reason": 30,
}
_FALLBACK_LIMIT = 50

_SQL_VERB = re.compile(r"^\s*(?:(?:/\*.*?\*/|--[^\n]*(?:\n|$))\s*)*([A-Za-z]+)", re.DOTALL)


def normalize_method(method: str) -> str:
    """The request method when it is a standard verb, else ``OTHER``."""
    upper = method.upper()
    return upper if upper in STANDARD_METHODS else OTHER_METHOD


def sql_operation(statement: str) -> str:
    """First SQL keyword (``SELECT``, ``INSERT``, ``WITH``...), skipping leading comments that
    sqlcommenter-style tools prepend; ``OTHER`` when the statement starts with something else."""
    match = _SQL_VERB.match(statement)
    return match.group(1).upper() if match else "OTHER"


class LabelGuard:
    """Bounded distinct values per (metric, label).

    ``on_overflow(metric, label)`` is called for every value folded into ``<overflow>``; the
    metrics module points it at ``telemetry_metric_label_overflow_total``.
    """

    def __init__(
        self,
        on_overflow: Callable[[str, str], None],
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self._limits = {**DEFAULT_LABEL_LIMITS, **(limits or {})}
        self._on_overflow = on_overflow
        self._seen: dict[tuple[str, str], set[str]] = {}
        # Only insertions take the lock: a lookup of a known value is the hot path and a set
        # membership test is safe under concurrent readers.
        self._lock = threading.Lock()

    def limit(self, label: str) -> int:
        return self._limits.get(label, _FALLBACK_LIMIT)

    def bound(self, metric: str, label: str, value: str) -> str:
        key = (metric, label)
        seen = self._seen.get(key)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(key, set())
            if value in seen:
                return value
            if len(seen) < self.limit(label):
                seen.add(value)
                return value
        self._on_overflow(metric, label)
        return OVERFLOW


class RouteResolver:
    """Route template of a request, read after the application handled it.

    Starlette's router stores the matched route in ``scope["route"]`` (FastAPI's included
    routers too). FastAPI >= 0.137 keeps ``include_router`` routes under an ``_IncludedRouter``
    node, so the route's own ``path`` lacks the router prefix: the full template is in the
    effective route context FastAPI leaves in ``scope["fastapi"]``. Under a ``Mount`` the
    scope's ``root_path`` grew by the mount prefix; that prefix is mapped back to the mount's
    template (``/tenants/{tenant}``) by matching the application's mounts once per distinct
    prefix. Unmatched requests (404, trailing-slash redirects) have no route at all.

    The template keeps Starlette's convertor syntax (``/items/{item_id:int}``) because that is
    exactly what OpenTelemetry's FastAPI instrumentation puts in the span's ``http.route``:
    metrics and traces then filter on the same string.
    """

    _MAX_CACHED_PREFIXES = 256

    def __init__(self) -> None:
        self._mount_templates: dict[str, str] = {}

    def template(self, scope: MutableMapping[str, Any], entry_root_path: str, app: Any) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        prefix = str(scope.get("root_path", ""))[len(entry_root_path) :]
        if _is_mount(route):
            # The mounted application is not a router (static files, a bare ASGI app): the
            # mount is the innermost route and everything below it is one template.
            return self._mount_prefix(app, prefix) + "/{path}"
        path = _effective_path(scope, route)
        if path is None:
            return UNMATCHED
        return self._mount_prefix(app, prefix) + path if prefix else path

    def _mount_prefix(self, app: Any, prefix: str) -> str:
        if not prefix:
            return ""
        cached = self._mount_templates.get(prefix)
        if cached is not None:
            return cached
        template = _match_mounts(getattr(app, "routes", ()), prefix) or prefix
        if len(self._mount_templates) < self._MAX_CACHED_PREFIXES:
            self._mount_templates[prefix] = template
        return template


@functools.cache
def _mount_class() -> type | None:
    # Looked up once: Starlette is optional (the middleware also wraps bare ASGI apps).
    try:
        from starlette.routing import Mount
    except ImportError:
        return None
    return Mount


def _is_mount(route: Any) -> bool:
    mount = _mount_class()
    return mount is not None and isinstance(route, mount)


def _effective_path(scope: MutableMapping[str, Any], route: Any) -> str | None:
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        context = fastapi_scope.get("effective_route_context")
        if context is not None and getattr(context, "original_route", None) is route:
            context_path = getattr(context, "path", None)
            if isinstance(context_path, str) and context_path:
                return context_path
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _match_mounts(routes: Sequence[Any], prefix: str) -> str | None:
    """Template of the chain of mounts whose prefixes produced ``prefix``."""
    for route in routes:
        if not _is_mount(route):
            continue
        match = route.path_regex.match(prefix + "/")
        if match is None:
            continue
        rest = "/" + match.groupdict().get("path", "")
        rest = rest.rstrip("/")
        if not rest:
            return str(route.path)
        inner = _match_mounts(getattr(route, "routes", ()), rest)
        return str(route.path) + (inner if inner is not None else rest)
    return None
