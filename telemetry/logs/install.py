"""Correlated, scrubbed logs: every record carries the trace id of the request it belongs to.

Records are enriched where they are *created*, by a ``logging`` record factory, not by a
filter on some handlers: uvicorn's access logger does not propagate to root and brings its
own handlers (re-created by its ``dictConfig`` at start-up), ``QueueHandler`` set-ups emit
on another thread where the request's span is no longer current, and apps add handlers
after start-up. The factory sees every record of every logger, in the caller's context,
whatever handlers exist. :class:`TraceContextFilter` does the same work (idempotently) for
records that bypass the factory (``logging.makeLogRecord``, records received over a socket).

Each record gets ``trace_id`` / ``span_id`` (32 / 16 hex, ``""`` outside a valid span),
``trace_sampled``, and, when it will become a Sentry event, ``sentry_event_id``, at
creation. Its message, args, exception and stack text are scrubbed once, lazily, when the
first handler takes it (``logging.Handler.handle`` is wrapped), and bounded in size before
any regex runs: a record no handler emits costs no formatting, and a 10 MB message costs
what an 8 KiB one does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import IO, Any, Literal

from sentry_sdk.integrations import logging as sentry_logging
from sentry_sdk.scope import add_global_event_processor

from telemetry.logs.records import (
    OWN_ATTRS,
    RecordFactory,
    ScrubOnEmit,
    TraceContextFilter,
    adopt_record_event_id,
    enrich_record,
    sentry_ignored,
)
from telemetry.scrubbing import ScrubbingPolicy
from telemetry.shared import PIPELINE_LOGGERS

LogFormat = Literal["auto", "json", "console"]

# Loggers of the telemetry pipeline itself: never Sentry events (an OTLP export failure
# logged at ERROR must not become an "application error"), nor breadcrumbs.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
LIFECYCLE_LOGGER = "telemetry.lifecycle"

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI copy of the message
}
_LIFECYCLE = "_telemetry_lifecycle"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and k not in OWN_ATTRS and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line (staging, production): what Loki/Grafana index."""

    def __init__(
        self, service: str, environment: str, policy: ScrubbingPolicy | None = None
    ) -> None:
        super().__init__()
        self.service = service
        self.environment = environment
        self.policy = policy or ScrubbingPolicy.default()

    def format(self, record: logging.LogRecord) -> str:
        enrich_record(record, self.policy)
        timestamp = datetime.fromtimestamp(record.created, UTC)
        payload: dict[str, Any] = {
            "timestamp": timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.policy.scrub_text(record.getMessage()),
            "service": self.service,
            "environment": self.environment,
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
            "trace_sampled": bool(getattr(record, "trace_sampled", False)),
        }
        event_id = getattr(record, "sentry_event_id", None)
        if event_id:
            payload["sentry_event_id"] = event_id
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        extras = self.policy.scrub_value(_extras(record))
        for key, value in extras.items():
            if key not in payload:
                payload[key] = value
            elif payload[key] != value:
                payload[f"extra_{key}"] = value
        try:
            return json.dumps(payload, ensure_ascii=False, default=self._default)
        except (TypeError, ValueError):  # odd keys or cycles in extra=: stringify them
            for key in extras:
                payload.pop(key, None)
                payload[f"extra_{key}"] = self.policy.scrub_text(repr(extras[key]))
            return json.dumps(payload, ensure_ascii=False, default=self._default)

    def _default(self, value: Any) -> str:
        return self.policy.scrub_text(str(value))


class ConsoleFormatter(logging.Formatter):
    """A readable line for development: time, level, logger, short trace id, message."""

    def __init__(self, policy: ScrubbingPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or ScrubbingPolicy.default()

    def format(self, record: logging.LogRecord) -> str:
        enrich_record(record, self.policy)
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        parts = [when, f"{record.levelname:<8}", record.name]
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            parts.append(f"[{trace_id[:8]}]")
        parts.append(self.policy.scrub_text(record.getMessage()))
        if not getattr(record, _LIFECYCLE, False):  # lifecycle fields are in its message
            extras = self.policy.scrub_value(_extras(record))
            parts.extend(f"{key}={_kv(value)}" for key, value in extras.items())
        event_id = getattr(record, "sentry_event_id", None)
        if event_id:
            parts.append(f"sentry_event_id={event_id}")
        line = " ".join(parts)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


def _kv(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


def log_lifecycle(event: str, **fields: Any) -> None:
    """``telemetry_initialized environment=production sentry=on ...`` as one structured line.

    The message carries ``key=value`` pairs (readable with any formatter); the JSON
    formatter also emits each field as its own key. ``None`` fields are left out.
    """
    present = {k: v for k, v in fields.items() if v is not None}
    message = " ".join([event, *(f"{k}={_kv(v)}" for k, v in present.items())])
    # A key equal to a LogRecord attribute would make logging raise: suffix it.
    extra: dict[str, Any] = {
        (f"{k}_" if k in _STANDARD_ATTRS or k in OWN_ATTRS else k): v for k, v in present.items()
    }
    extra["event"] = event
    extra[_LIFECYCLE] = True
    logging.getLogger(LIFECYCLE_LOGGER).info("%s", message, extra=extra)


class LoggingHandle:
    """What :func:`install_logging` changed; ``uninstall()`` puts it back."""

    def __init__(self, log_format: str, handler: logging.Handler | None) -> None:
        self.log_format = log_format
        self.handler = handler  # the root handler this library added, if any
        self._undo: list[Callable[[], None]] = []
        self.installed = True

    def uninstall(self) -> None:
        global _installed
        with _lock:
            if not self.installed:
                return
            self.installed = False
            for step in reversed(self._undo):
                with contextlib.suppress(Exception):
                    step()
            if _installed is self:
                _installed = None


_lock = threading.RLock()
_installed: LoggingHandle | None = None
_processor_registered = False


def _restore_logger(
    logger: logging.Logger, handlers: list[logging.Handler], propagate: bool
) -> None:
    logger.handlers = handlers
    logger.propagate = propagate


def _resolve_format(log_format: str, environment: str) -> str:
    if log_format == "auto":
        return "console" if environment == "development" else "json"
    if log_format not in ("json", "console"):
        raise ValueError(f"log_format must be json, console or auto, got {log_format!r}")
    return log_format


def install_logging(
    service: str,
    environment: str,
    log_format: str = "auto",
    level: int | str = logging.INFO,
    policy: ScrubbingPolicy | None = None,
    *,
    stream: IO[str] | None = None,
    add_handler: bool | None = None,
    format_existing_handlers: bool = False,
    take_over_uvicorn: bool | None = None,
) -> LoggingHandle:
    """Correlated, scrubbed logs for the whole process. Idempotent: while installed, a
    second call returns the first handle and changes nothing.

    * every record of every logger gets trace ids and is scrubbed (record factory);
    * ``add_handler``: a stream handler with the chosen formatter on root; by default
      only when root has no handler (an app that configured logging keeps its handlers;
      ``format_existing_handlers=True`` puts our formatter on them too);
    * ``take_over_uvicorn``: uvicorn's loggers drop their own handlers and propagate to
      root, so access lines come out in the same format (default: when our handler was
      added and the format is json). If uvicorn configures logging after this call,
      its handlers come back, but its records are still enriched and scrubbed;
    * the pipeline's own loggers (``opentelemetry*``, ``telemetry*``) never become
      Sentry events or breadcrumbs.
    """
    global _installed, _processor_registered
    with _lock:
        if _installed is not None:
            return _installed
        resolved = _resolve_format(log_format, environment)
        policy = policy or ScrubbingPolicy.default()
        numeric_level = (
            level if isinstance(level, int) else logging.getLevelNamesMapping()[level.upper()]
        )
        formatter: logging.Formatter = (
            JsonFormatter(service, environment, policy)
            if resolved == "json"
            else ConsoleFormatter(policy)
        )
        root = logging.getLogger()
        if add_handler is None:
            add_handler = not root.handlers
        handler = None
        if add_handler:
            handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(formatter)
            handler.addFilter(TraceContextFilter(policy))
        handle = LoggingHandle(resolved, handler)
        undo = handle._undo

        factory = RecordFactory(logging.getLogRecordFactory(), policy)
        logging.setLogRecordFactory(factory)
        scrub_on_emit = ScrubOnEmit(policy)
        scrub_on_emit.install()
        undo.append(scrub_on_emit.uninstall)

        def restore_factory() -> None:
            factory.active = False  # if someone wrapped it since, it becomes a pass-through
            if logging.getLogRecordFactory() is factory:
                logging.setLogRecordFactory(factory.previous)

        undo.append(restore_factory)

        if handler is not None:
            undo.append(partial(root.setLevel, root.level))
            undo.append(partial(root.removeHandler, handler))
            root.addHandler(handler)
            root.setLevel(numeric_level)
        if format_existing_handlers:
            for existing in list(root.handlers):
                if existing is not handler:
                    undo.append(partial(existing.setFormatter, existing.formatter))
                    existing.setFormatter(formatter)
        if take_over_uvicorn is None:
            take_over_uvicorn = handler is not None and resolved == "json"
        if take_over_uvicorn:
            for name in UVICORN_LOGGERS:
                logger = logging.getLogger(name)
                undo.append(
                    partial(_restore_logger, logger, list(logger.handlers), logger.propagate)
                )
                logger.handlers = []
                logger.propagate = True

        # The lifecycle lines must show even when root stays at WARNING.
        pipeline = logging.getLogger("telemetry")
        if pipeline.level == logging.NOTSET or pipeline.level > logging.INFO:
            undo.append(partial(pipeline.setLevel, pipeline.level))
            pipeline.setLevel(logging.INFO)

        for pattern in PIPELINE_LOGGERS:
            if pattern not in sentry_ignored():
                sentry_logging.ignore_logger(pattern)
                undo.append(partial(sentry_logging.unignore_logger, pattern))

        if not _processor_registered:  # process-wide and not removable: register once
            add_global_event_processor(adopt_record_event_id)
            _processor_registered = True

        _installed = handle
        return handle
