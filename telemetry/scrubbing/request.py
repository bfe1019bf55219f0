"""Route parameters that are secrets: ``/reset-password/{token}``.

Names are not enough here: the raw path ``/reset-password/abc123`` names nothing, only the
route template does. Two ways to find the values:

* in the request's own context (Sentry events, log records including uvicorn's access
  line): :class:`RouteSecretsMiddleware` keeps the ASGI scope of the current request in a
  context variable; once the router has matched, ``scope["route"]`` and
  ``scope["path_params"]`` say which values sit under a sensitive name;
* on the export path (span attributes, after the request is gone): the span's
  ``http.route`` template is matched against its URL attributes.

The values found are then replaced wherever they occur (:func:`redact_values`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import quote

__all__ = [
    "RouteSecretsMiddleware",
    "current_route_secrets",
    "redact_text",
    "redact_values",
    "template_secrets",
]

FILTERED = "[Filtered]"
#: Shorter values are replaced only as whole path segments, never inside other text.
MIN_FREE_LENGTH = 6

_scope: ContextVar[Mapping[str, Any] | None] = ContextVar("telemetry_request_scope", default=None)


class RouteSecretsMiddleware:
    """Outermost ASGI layer: the current request's scope, for the scrubbers to read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        token = _scope.set(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            _scope.reset(token)


def current_route_secrets(is_sensitive: Callable[[str], bool]) -> tuple[str, ...]:
    """Values of the current request's path parameters whose name is sensitive."""
    scope = _scope.get()
    if scope is None:
        return ()
    params = scope.get("path_params")
    if not params or not isinstance(params, Mapping):
        return ()
    return _with_encoded(str(v) for k, v in params.items() if is_sensitive(str(k)))


def _with_encoded(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        if not value or value == FILTERED:
            continue
        out.append(value)
        encoded = quote(value, safe="")
        if encoded != value:
            out.append(encoded)
    # longest first: a value that contains another is replaced whole
    return tuple(sorted(set(out), key=len, reverse=True))


@lru_cache(maxsize=256)
def _param_names(template: str) -> tuple[str, ...]:
    # Every span of a templated route asks again: the template is parsed once.
    return tuple(m.group(1) for m in re.finditer(r"\{([A-Za-z_]\w*)", template))


@lru_cache(maxsize=256)
def _template_rx(template: str, sensitive: frozenset[str]) -> re.Pattern[str] | None:
    parts: list[str] = []
    pos = 0
    found = False
    for m in re.finditer(r"\{([A-Za-z_]\w*)(?::(\w+))?\}", template):
        parts.append(re.escape(template[pos : m.start()]))
        name, converter = m.group(1), m.group(2)
        pattern = ".+?" if converter == "path" else "[^/?#]+"
        if name in sensitive:
            found = True
            parts.append(f"(?P<s{len(parts)}>{pattern})")
        else:
            parts.append(f"(?:{pattern})")
        pos = m.end()
    if not found:
        return None
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts) + r"(?=[?#]|$)")


def template_secrets(
    template: str, urls: Iterable[str], is_sensitive: Callable[[str], bool]
) -> tuple[str, ...]:
    """Values under sensitive parameters of ``template`` in any of ``urls``."""
    if "{" not in template:
        return ()
    names = frozenset(name for name in _param_names(template) if is_sensitive(name))
    rx = _template_rx(template, names) if names else None
    if rx is None:
        return ()
    values: list[str] = []
    for url in urls:
        m = rx.search(url)
        if m is not None:
            values += [v for v in m.groupdict().values() if v]
    return _with_encoded(values)


def redact_text(text: str, values: tuple[str, ...]) -> str:
    """``text`` with every value replaced; short ones only as whole path segments."""
    out = text
    for value in values:
        if value not in out:
            continue
        if len(value) >= MIN_FREE_LENGTH:
            out = out.replace(value, FILTERED)
        else:
            out = re.sub(rf"(?<=/){re.escape(value)}(?=[/?#]|$)", FILTERED, out)
    return text if out == text else out


def redact_values(value: Any, values: tuple[str, ...], _depth: int = 0) -> Any:
    """A JSON-like value with the given secrets replaced in every string (same object when
    nothing changed)."""
    if not values or _depth > 48:
        return value
    if isinstance(value, str):
        return redact_text(value, values)
    if isinstance(value, Mapping):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new = redact_values(item, values, _depth + 1)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, (list, tuple)):
        items = [redact_values(item, values, _depth + 1) for item in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value
