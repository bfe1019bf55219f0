"""OpenTelemetry instrumentations, each optional and imported only when used.

A library that is not installed is simply not instrumented. A library that is installed
without its instrumentation package gets one warning naming the extra to install, because
silently losing its spans is the worse failure.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

from telemetry.shared import DISTRIBUTION

__all__ = ["Instrumented", "MissingExtraError", "instrument_fastapi", "instrument_libraries"]

logger = logging.getLogger("telemetry.instrumentation")


class MissingExtraError(ImportError):
    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"telemetry: the {extra} integration needs {package}; "
            f"install it with: pip install '{DISTRIBUTION}[{extra}]'"
        )
        self.extra = extra


@dataclass
class Instrumented:
    """What this process instrumented, so shutdown can undo exactly that."""

    libraries: list[str] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)

    def uninstrument(self) -> None:
        for step in reversed(self.undo):
            try:
                step()
            except Exception as exc:  # undoing must never break shutdown
                logger.debug("uninstrument step failed: %r", exc)
        self.undo.clear()
        self.libraries.clear()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def instrument_fastapi(
    app: Any,
    provider: TracerProvider,
    *,
    excluded_urls: str,
) -> Callable[[], None]:
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise MissingExtraError("fastapi", "opentelemetry-instrumentation-fastapi") from exc
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=excluded_urls,
        # The ASGI receive/send sub-spans double the span count for no insight.
        exclude_spans=["receive", "send"],
    )
    return lambda: FastAPIInstrumentor.uninstrument_app(app)


def _library(
    name: str,
    module: str,
    instrumentation: str,
    extra: str,
    package: str,
) -> Any | None:
    """The instrumentor class, or None (with a warning naming the extra) when missing."""
    if not _installed(module):
        return None
    try:
        mod = importlib.import_module(instrumentation)
    except ImportError:
        logger.warning(
            "telemetry_integration_missing library=%s: %s is installed but not traced; "
            "install it with: pip install '%s[%s]' (adds %s)",
            name,
            module,
            DISTRIBUTION,
            extra,
            package,
        )
        return None
    return mod


#: (library module, instrumentation module, instrumentor class, extra, instrumentation package)
_CLIENT_LIBRARIES = (
    ("sqlalchemy", "opentelemetry.instrumentation.sqlalchemy", "SQLAlchemyInstrumentor",
     "sqlalchemy", "opentelemetry-instrumentation-sqlalchemy"),
    ("redis", "opentelemetry.instrumentation.redis", "RedisInstrumentor",
     "redis", "opentelemetry-instrumentation-redis"),
    ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor",
     "httpx", "opentelemetry-instrumentation-httpx"),
    # The official GenAI instrumentations (telemetry.genai wires their metrics and content).
    ("openai", "opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor",
     "genai", "opentelemetry-instrumentation-genai-openai"),
    ("anthropic", "opentelemetry.instrumentation.genai.anthropic", "AnthropicInstrumentor",
     "genai", "opentelemetry-instrumentation-genai-anthropic"),
)  # fmt: skip


def instrument_libraries(
    provider: TracerProvider,
    *,
    engines: Sequence[Any] = (),
    asyncio_coroutines: Iterable[str] = (),
    cache_prefixes: Sequence[str] = ("",),
    library_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Instrumented:
    done = Instrumented()
    request_hook, response_hook = redis_cache_hooks(cache_prefixes)
    options: dict[str, Mapping[str, Any]] = {
        **(library_options or {}),
        # Engines made before setup are only traced when passed in (create_engine is
        # patched for those made after).
        "sqlalchemy": {
            "engines": [getattr(e, "sync_engine", e) for e in engines] or None,
            "enable_commenter": False,
        },
        "redis": {"request_hook": request_hook, "response_hook": response_hook},
    }
    for library, module, class_name, extra, package in _CLIENT_LIBRARIES:
        instrumentation = _library(library, library, module, extra, package)
        if instrumentation is None:
            continue
        instrumentor = getattr(instrumentation, class_name)()
        instrumentor.instrument(tracer_provider=provider, **options.get(library, {}))
        done.libraries.append(library)
        done.undo.append(instrumentor.uninstrument)

    coroutines = set(asyncio_coroutines)
    if coroutines:
        try:
            from opentelemetry.instrumentation.asyncio import AsyncioInstrumentor
        except ImportError as exc:
            raise MissingExtraError("asyncio", "opentelemetry-instrumentation-asyncio") from exc
        asyncio_instrumentor = AsyncioInstrumentor()
        asyncio_instrumentor.instrument(tracer_provider=provider)
        # The instrumentor reads its coroutine names from its own environment variable;
        # the names given in settings are added so one place configures them.
        asyncio_instrumentor._coros_name_to_trace = (
            set(asyncio_instrumentor._coros_name_to_trace) | coroutines
        )
        done.libraries.append("asyncio")
        done.undo.append(asyncio_instrumentor.uninstrument)
    return done


#: Redis commands that read or write a cache entry, and their Sentry cache op.
_CACHE_OPS = {
    "GET": "cache.get",
    "MGET": "cache.get",
    "GETEX": "cache.get",
    "SET": "cache.put",
    "SETEX": "cache.put",
    "PSETEX": "cache.put",
    "SETNX": "cache.put",
    "MSET": "cache.put",
}
RedisHook = Callable[..., None]


def redis_cache_hooks(prefixes: Sequence[str]) -> tuple[RedisHook, RedisHook]:
    """Hooks that give redis spans what sentry-sdk's Redis integration sends.

    Every command: the ``db.redis`` op, a description with the key and the other arguments
    ``[Filtered]``, and ``redis.command``/``redis.key``. As sentry-sdk does with
    ``cache_prefixes``, a read or write of a key with one of the prefixes is a cache
    operation instead: the ``cache.get``/``cache.put`` op, the key, whether it was a hit and
    the item size, which fill Sentry's Caches view. OpenTelemetry's own database
    attributes stay, so Jaeger shows the span as before.
    """
    prefix_tuple = tuple(prefixes)

    def request_hook(span: Any, _instance: Any, args: Any, _kwargs: Any) -> None:
        if not args or not span.is_recording():
            return
        command = _text(args[0]).upper()
        key = _text(args[1]) if len(args) > 1 else None
        span.set_attribute("redis.command", command)
        span.set_attribute("db.operation", command)
        span.set_attribute("redis.is_cluster", False)
        if key is not None:
            span.set_attribute("redis.key", key)
        op = _CACHE_OPS.get(command) if prefix_tuple and key is not None else None
        if command == "MSET":
            keys = [_text(k) for k in args[1::2]]
        elif command == "MGET":
            keys = [_text(k) for k in args[1:]]
        else:
            keys = [key] if key is not None else []
        if op is None or not all(k.startswith(prefix_tuple) for k in keys):
            span.set_attribute("sentry.op", "db.redis")
            span.set_attribute("sentry.description", _safe_command(command, args[1:]))
            return
        span.set_attribute("sentry.op", op)
        span.set_attribute("sentry.description", ", ".join(keys))
        span.set_attribute("cache.key", keys)
        if op == "cache.put" and len(args) > 2:
            span.set_attribute("cache.item_size", _size(args[-1]))

    def response_hook(span: Any, _instance: Any, response: Any) -> None:
        if not span.is_recording() or span.attributes.get("sentry.op") != "cache.get":
            return
        values = response if isinstance(response, list) else [response]
        hit = any(v is not None for v in values)
        span.set_attribute("cache.hit", hit)
        if hit:
            span.set_attribute("cache.item_size", sum(_size(v) for v in values if v is not None))

    return request_hook, response_hook


#: Commands whose every argument is a secret (sentry-sdk's list).
_SENSITIVE_COMMANDS = frozenset({"AUTH", "HELLO", "MIGRATE", "ACL"})
_MAX_COMMAND_ARGS = 10


def _safe_command(command: str, args: Sequence[Any]) -> str:
    """``GET 'key'`` / ``SET 'key' [Filtered]``: the key names what was touched; values
    may be anything, so they stay out (sentry-sdk's description without PII)."""
    if command in _SENSITIVE_COMMANDS:
        return f"{command} [Filtered]"
    parts = [command]
    for index, arg in enumerate(args[:_MAX_COMMAND_ARGS]):
        parts.append(repr(_text(arg)) if index == 0 else "[Filtered]")
    return " ".join(parts)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _size(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    return len(str(value))
