"""The Sentry side of the scrubbing policy: walking an error/transaction event or a
breadcrumb before it leaves the process (``before_send``, ``before_send_transaction``,
``before_breadcrumb``).

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

from telemetry.scrubbing import FILTERED, ScrubbingPolicy, Wrapper

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
    ``before_send_transaction``, ``scrub_breadcrumb`` for ``before_breadcrumb``."""

    def __init__(self, policy: ScrubbingPolicy) -> None:
        if _ANNOTATED not in policy.wrappers:
            policy = dataclasses.replace(policy, wrappers=(*policy.wrappers, _ANNOTATED))
        self.policy = policy

    def scrub_event(self, event: Any, hint: Any = None) -> Any:
        """The scrubbed event (``before_send`` / ``before_send_transaction``)."""
        return _scrub_event(self.policy, event)

    def scrub_breadcrumb(self, crumb: Any, hint: Any = None) -> Any:
        """The scrubbed breadcrumb (``before_breadcrumb``), or None to drop it."""
        try:
            return self.policy.scrub_value(crumb)
        except Exception:  # a breadcrumb is not worth a leak: drop it
            _log.debug("scrubbing a breadcrumb failed; dropping it", exc_info=True)
            return None


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
