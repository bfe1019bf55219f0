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

__all__ = ["Instrumented", "MissingExtraError", "instrument_fastapi", "instrument_libraries"]

logger = logging.getLogger("telemetry.instrumentation")


class MissingExtraError(ImportError):
    def __init__(self, extra: str, package: str) -> None:
        super().__init__(
            f"telemetry: the {extra} integration needs {package}; "
            f"install it with: pip install 'telemetry[{extra}]'"
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
    server_request_hook: Callable[..., None] | None = None,
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
        server_request_hook=server_request_hook,
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
            "install it with: pip install 'telemetry[%s]' (adds %s)",
            name,
            module,
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
    library_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Instrumented:
    done = Instrumented()
    options: dict[str, Mapping[str, Any]] = {
        **(library_options or {}),
        # Engines made before setup are only traced when passed in (create_engine is
        # patched for those made after).
        "sqlalchemy": {
            "engines": [getattr(e, "sync_engine", e) for e in engines] or None,
            "enable_commenter": False,
        },
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
