"""``telemetry doctor``: is this service's telemetry wired the way it believes it is?
``run_checks`` is the entry point (the CLI and in-process); each check is a module here."""

from telemetry.doctor.checks import CheckResult, Status
from telemetry.doctor.run import (
    DEFAULT_TIMEOUT_S,
    TEST_MESSAGE,
    TEST_SPAN_NAME,
    format_json,
    format_text,
    is_ok,
    run_checks,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TEST_MESSAGE",
    "TEST_SPAN_NAME",
    "CheckResult",
    "Status",
    "format_json",
    "format_text",
    "is_ok",
    "run_checks",
]
