"""Breadcrumbs of dependency calls, as sentry-sdk's own integrations leave them.

sentry-sdk's HTTPX, SQLAlchemy and Redis integrations stay off (OpenTelemetry owns the
spans), so the breadcrumbs they would leave on the request's scope are made here, from the
same per-call hooks that feed the dependency metrics: every call, sampled or not, lands on
the Sentry scope of the request that made it. The shapes follow sentry-sdk's
(``httplib``/``http``, ``query``, ``redis``). Like every other breadcrumb they are scrubbed
with the one policy when an event carries them (``before_send``), not when they are added.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sentry_sdk

__all__ = ["SentryBreadcrumbs"]

#: Redis commands whose arguments are all secret (sentry-sdk's list).
_SENSITIVE_REDIS_COMMANDS = frozenset({"auth", "hello", "migrate", "acl"})
_FILTERED = "[Filtered]"
_MAX_REDIS_ARGS = 10


class SentryBreadcrumbs:
    """Adds a breadcrumb per HTTP call, SQL statement and redis command."""

    def http(self, method: str, url: str, status: int | None) -> None:
        parts = urlsplit(url)
        data: dict[str, Any] = {
            "url": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            "http.method": method,
            "http.query": parts.query,
            "http.fragment": parts.fragment,
        }
        crumb: dict[str, Any] = {"type": "http", "category": "httplib", "data": data}
        if status is not None:
            data["status_code"] = status
            if status >= 500:
                crumb["level"] = "error"
            elif status >= 400:
                crumb["level"] = "warning"
        else:
            crumb["level"] = "error"
        sentry_sdk.add_breadcrumb(crumb)

    def sql(self, statement: str, system: str) -> None:
        sentry_sdk.add_breadcrumb(
            message=statement, category="query", data={"db.system": system}
        )

    def redis(self, args: tuple[Any, ...]) -> None:
        name = _text(args[0])
        data: dict[str, Any] = {"redis.command": name, "db.operation": name}
        parts = [name]
        if name.lower() in _SENSITIVE_REDIS_COMMANDS:
            parts.append(_FILTERED)
        else:
            for index, arg in enumerate(args[1 : _MAX_REDIS_ARGS + 1]):
                # The key names what was touched; values may be anything, so they stay out.
                parts.append(repr(_text(arg)) if index == 0 else _FILTERED)
            if len(args) > 1:
                data["redis.key"] = _text(args[1])
        sentry_sdk.add_breadcrumb(
            message=" ".join(parts), type="redis", category="redis", data=data
        )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
