"""The Sentry side of the scrubbing policy: walking an error/transaction event or a
breadcrumb before it leaves the process (``before_send``, ``before_send_transaction``,
``before_breadcrumb``).

On top of the policy's generic walk, an event needs: SDK bookkeeping left as it is, the
user's IP address and (by default) e-mail dropped, a log entry's params checked against its
scrubbed text, and a fallback that sends a reduced event rather than lose the error or send
it raw. :class:`telemetry.scrubbing.ScrubbingPolicy` exposes these as its hook methods.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from telemetry.scrubbing.patterns import _EVENT_SKIP, FILTERED

if TYPE_CHECKING:
    from telemetry.scrubbing.policy import ScrubbingPolicy

__all__ = ["scrub_breadcrumb", "scrub_event"]

# Named after the public module, where these hooks are configured and documented.
_log = logging.getLogger("telemetry.scrubbing")


def scrub_event(policy: ScrubbingPolicy, event: Any) -> Any:
    """The scrubbed event (``before_send`` / ``before_send_transaction``)."""
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


def scrub_breadcrumb(policy: ScrubbingPolicy, crumb: Any) -> Any:
    """The scrubbed breadcrumb (``before_breadcrumb``), or None to drop it."""
    try:
        return policy.scrub_value(crumb)
    except Exception:  # a breadcrumb is not worth a leak: drop it
        _log.debug("scrubbing a breadcrumb failed; dropping it", exc_info=True)
        return None


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
