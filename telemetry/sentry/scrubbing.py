"""The Sentry side of the scrubbing policy: walking an error/transaction event before it
leaves the process (``before_send``, ``before_send_transaction``), its breadcrumbs included.

Breadcrumbs are scrubbed there, when an event carries them, not at ``add_breadcrumb``: every
SQL statement, HTTP call and log line of every request leaves one, and almost no request
ends in an event. They wait unscrubbed in the request's scope, inside the process; whatever
sentry-sdk sends them in (an error, a message, a log event) goes through ``before_send``.

On top of the policy's generic walk, an event needs: SDK bookkeeping left as it is, the
user's IP address and (by default) e-mail dropped, a log entry's params checked against its
scrubbed text, sentry-sdk's ``AnnotatedValue`` scrubbed inside, and a fallback that sends a
reduced event rather than lose the error or send it raw.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from sentry_sdk.utils import AnnotatedValue

from telemetry.scrubbing import FILTERED, SQL_KEYS, ScrubbingPolicy, Wrapper, scrub_sql

__all__ = ["EventScrubber"]

# Named after the policy's package, where these hooks are configured and documented.
_log = logging.getLogger("telemetry.scrubbing")

# Sentry event sections that never hold user data; skipping them keeps scrubbing cheap.
_EVENT_SKIP = frozenset({"_meta", "sdk", "modules", "debug_meta", "event_id"})
# sentry-sdk marks trimmed or removed request data with AnnotatedValue: scrub inside it.
_ANNOTATED: Wrapper = (
    AnnotatedValue,
    lambda value: value.value,
    lambda value, inner: AnnotatedValue(inner, value.metadata),
)


class EventScrubber:
    """The policy as sentry-sdk's hooks: ``scrub_event`` for ``before_send`` and
    ``before_send_transaction`` (breadcrumbs included, see ``scrub_breadcrumb``)."""

    def __init__(self, policy: ScrubbingPolicy) -> None:
        if _ANNOTATED not in policy.wrappers:
            policy = dataclasses.replace(policy, wrappers=(*policy.wrappers, _ANNOTATED))
        self.policy = policy

    def scrub_event(self, event: Any, hint: Any = None) -> Any:
        """The scrubbed event (``before_send`` / ``before_send_transaction``)."""
        return _scrub_event(self.policy, event)

    def scrub_breadcrumb(self, crumb: Any, hint: Any = None) -> Any:
        """One scrubbed breadcrumb, or None to drop it (what ``scrub_event`` does to each of
        an event's breadcrumbs; usable as a ``before_breadcrumb`` too)."""
        return _scrub_breadcrumb(self.policy, crumb)


def _scrub_event(policy: ScrubbingPolicy, event: Any) -> Any:
    if not isinstance(event, dict):
        return policy.scrub_value(event)
    try:
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key in _EVENT_SKIP:
                out[key] = value
            elif key == "user":
                out[key] = _scrub_user(policy, value)
            elif key == "logentry" and isinstance(value, Mapping):
                out[key] = _scrub_logentry(policy, value)
            elif key in ("exception", "threads") and isinstance(value, Mapping):
                out[key] = policy.scrub_value(_without_driver_locals(value))
            elif key == "spans" and isinstance(value, list):
                out[key] = policy.scrub_value([_span_sql(span) for span in value])
            elif key == "contexts" and isinstance(value, Mapping):
                out[key] = policy.scrub_value(_without_client_ip(policy, value))
            elif key == "breadcrumbs":
                out[key] = _scrub_breadcrumbs(policy, value)
            else:
                out[key] = policy.scrub_value(value)
        return out
    except Exception:  # never lose an error to the scrubber; never send it raw
        _log.debug("scrubbing failed; sending a reduced event", exc_info=True)
        keep = (
            "event_id",
            "timestamp",
            "level",
            "platform",
            "type",
            "release",
            "environment",
            "transaction",
        )
        return {k: event[k] for k in keep if k in event} | {"message": FILTERED}


def _scrub_breadcrumbs(policy: ScrubbingPolicy, section: Any) -> Any:
    """An event's ``breadcrumbs`` (``{"values": [...]}``, or a bare list), each one
    scrubbed as a breadcrumb: the generic walk alone would keep a statement's literals."""
    if isinstance(section, list):
        return [c for c in (_scrub_breadcrumb(policy, crumb) for crumb in section) if c is not None]
    if not isinstance(section, Mapping) or not isinstance(section.get("values"), list):
        return policy.scrub_value(section)
    out = {k: v if k == "values" else policy.scrub_value(v) for k, v in section.items()}
    out["values"] = _scrub_breadcrumbs(policy, section["values"])
    return out


def _scrub_breadcrumb(policy: ScrubbingPolicy, crumb: Any) -> Any:
    try:
        if isinstance(crumb, Mapping) and crumb.get("category") == "query":
            # A SQL statement keeps its shape and loses its literal values.
            message = crumb.get("message")
            if isinstance(message, str):
                crumb = {**crumb, "message": scrub_sql(message)}
        return policy.scrub_value(crumb)
    except Exception:  # a breadcrumb is not worth a leak: drop it
        _log.debug("scrubbing a breadcrumb failed; dropping it", exc_info=True)
        return None


#: Frames of database drivers and ORMs hold the statement's bind parameters in locals
#: under generic names (``parameters``, ``params``, ``args``): user data whatever the
#: column, so those frames keep their code lines but lose their locals.
_DRIVER_MODULES = (
    "sqlalchemy.",
    "psycopg.",
    "psycopg2.",
    "psycopg_pool.",
    "asyncpg.",
    "pymysql.",
    "MySQLdb.",
    "aiomysql.",
    "aiosqlite.",
    "sqlite3.",
    "redis.",
)


def _without_driver_locals(section: Mapping[str, Any]) -> Any:
    values = section.get("values")
    if not isinstance(values, list):
        return section
    changed = False
    new_values = []
    for value in values:
        stacktrace = value.get("stacktrace") if isinstance(value, Mapping) else None
        frames = stacktrace.get("frames") if isinstance(stacktrace, Mapping) else None
        if isinstance(frames, list) and any(_is_driver_frame(f) for f in frames):
            changed = True
            clean = [
                {k: v for k, v in f.items() if k != "vars"} if _is_driver_frame(f) else f
                for f in frames
            ]
            value = {**value, "stacktrace": {**stacktrace, "frames": clean}}  # type: ignore[dict-item]
        new_values.append(value)
    return {**section, "values": new_values} if changed else section


def _is_driver_frame(frame: Any) -> bool:
    if not isinstance(frame, Mapping) or "vars" not in frame:
        return False
    module = frame.get("module")
    return isinstance(module, str) and (module + ".").startswith(_DRIVER_MODULES)


def _span_sql(span: Any) -> Any:
    """A transaction's database span: its statement keeps its shape, not its literals."""
    if not isinstance(span, dict) or not str(span.get("op", "")).startswith("db"):
        return span
    out = dict(span)
    if isinstance(out.get("description"), str):
        out["description"] = scrub_sql(out["description"])
    data = out.get("data")
    if isinstance(data, dict):
        out["data"] = {
            k: scrub_sql(v) if k in SQL_KEYS and isinstance(v, str) else v for k, v in data.items()
        }
    return out


def _without_client_ip(policy: ScrubbingPolicy, contexts: Mapping[str, Any]) -> Any:
    """The transaction's (server span's) OTel attributes without the end user's address."""
    trace = contexts.get("trace")
    data = trace.get("data") if isinstance(trace, Mapping) else None
    drop = policy.client_ip_attributes(server_span=True)
    if not isinstance(data, Mapping) or not drop.intersection(data):
        return contexts
    assert isinstance(trace, Mapping)
    clean = {k: v for k, v in data.items() if k not in drop}
    return {**contexts, "trace": {**trace, "data": clean}}


def _scrub_user(policy: ScrubbingPolicy, user: Any) -> Any:
    if not isinstance(user, Mapping):
        return policy.scrub_value(user)
    user = {k: v for k, v in user.items() if k != "ip_address"}
    if not policy.keep_user_email and user.get("email"):
        user["email"] = FILTERED
    return policy.scrub_value(user)


def _scrub_logentry(policy: ScrubbingPolicy, entry: Mapping[str, Any]) -> Any:
    out = policy.scrub_value(entry)
    formatted, params = entry.get("formatted"), out.get("params")
    if (
        isinstance(formatted, str)
        and isinstance(params, (list, tuple))
        and out.get("formatted") != formatted
    ):
        # A secret may be split over params ("%s=%s", "password", "hunter2"): a
        # param that no longer shows in the scrubbed text was (part of) a secret.
        kept = str(out.get("formatted"))
        out = dict(out)
        out["params"] = [p if str(p) in kept else FILTERED for p in params]
    return out
