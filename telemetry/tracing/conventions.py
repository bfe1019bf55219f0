"""Attributes derived from what an instrumentation already set, under the names Sentry reads.

OpenTelemetry's instrumentations in the version range this package supports emit the
older semantic names (``net.peer.name``, ``http.url``, ``http.status_code``); sentry-sdk's
integrations send the newer ones and a few of Sentry's own, which Sentry's Queries, Caches
and Outbound API views read. They are derived when a span is exported (off the request
path), from the span's own attributes, and go through the scrubbing policy with the rest.
Existing attributes always win; nothing is derived for a span that has none of the sources.

* database and Redis client spans: ``server.address``/``server.port`` (from
  ``net.peer.name``/``net.peer.port``); Redis also ``db.name`` (the database index) and
  ``db.driver.name`` ``redis-py``; a Redis cache span (``sentry.op`` ``cache.*``) also
  ``network.peer.address``/``network.peer.port``, as sentry-sdk's cache spans;
* HTTP server spans: ``http.response.status_code`` (from ``http.status_code``);
* HTTP client spans: ``url`` (without query and fragment), ``http.query``,
  ``http.fragment`` (empty when the URL has none, as sentry-sdk sends them),
  ``http.response.status_code`` and ``reason`` (the status code's standard phrase).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

__all__ = ["derived_attributes"]

_REDIS_SCOPE = "opentelemetry.instrumentation.redis"


def derived_attributes(
    span: ReadableSpan, attributes: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The attributes to add to ``span`` (None when there are none). ``attributes``: the
    span's own, when the caller holds them already as a dict (faster to read than the
    span's proxy)."""
    if attributes is None:
        attributes = span.attributes
    if not attributes:
        return None
    found: dict[str, Any] = {}
    if span.kind is SpanKind.SERVER:
        _add(found, attributes, "http.response.status_code", attributes.get("http.status_code"))
        return found or None
    if span.kind is not SpanKind.CLIENT:
        return None
    system = attributes.get("db.system") or attributes.get("db.system.name")
    if system is not None:
        _database(attributes, str(system), span, found)
    elif attributes.get("http.request.method") or attributes.get("http.method"):
        _http_client(attributes, found)
    return found or None


def _add(found: dict[str, Any], attributes: Mapping[str, Any], key: str, value: Any) -> None:
    if value is not None and key not in attributes:
        found[key] = value


def _database(
    attributes: Mapping[str, Any], system: str, span: ReadableSpan, found: dict[str, Any]
) -> None:
    host = attributes.get("net.peer.name")
    port = attributes.get("net.peer.port")
    _add(found, attributes, "server.address", host)
    _add(found, attributes, "server.port", port)
    if system != "redis":
        return
    index = attributes.get("db.redis.database_index")
    _add(found, attributes, "db.name", None if index is None else str(index))
    scope = span.instrumentation_scope
    if scope is not None and scope.name == _REDIS_SCOPE:
        _add(found, attributes, "db.driver.name", "redis-py")
    if str(attributes.get("sentry.op", "")).startswith("cache."):
        _add(found, attributes, "network.peer.address", host)
        _add(found, attributes, "network.peer.port", port)


def _http_client(attributes: Mapping[str, Any], found: dict[str, Any]) -> None:
    url = attributes.get("url.full") or attributes.get("http.url")
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None:
            _add(found, attributes, "url", urlunsplit((*parts[:3], "", "")))
            _add(found, attributes, "http.query", parts.query)
            _add(found, attributes, "http.fragment", parts.fragment)
    status = attributes.get("http.response.status_code") or attributes.get("http.status_code")
    if isinstance(status, int):
        _add(found, attributes, "http.response.status_code", status)
        with contextlib.suppress(ValueError):  # a code outside the standard list
            _add(found, attributes, "reason", HTTPStatus(status).phrase)
