"""One scrubbing policy, declared once, applied to every sink (see ``policy``)."""

from telemetry.scrubbing.patterns import FILTERED
from telemetry.scrubbing.policy import ScrubbingPolicy, Wrapper
from telemetry.scrubbing.request import RouteSecretsMiddleware
from telemetry.scrubbing.shapes import SQL_KEYS, scrub_sql

__all__ = [
    "FILTERED",
    "SQL_KEYS",
    "RouteSecretsMiddleware",
    "ScrubbingPolicy",
    "Wrapper",
    "scrub_sql",
]
