"""What every ``telemetry doctor`` check is built on: the result types (status, what was
found, what to do) and the small HTTP client the network checks share, whose failures are
described in plain words instead of as urllib's wrapped exceptions.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CheckResult",
    "HttpAnswer",
    "Status",
    "describe_network_error",
    "display_url",
    "http_request",
]


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    #: Not checked (not configured, or not checkable from this process); never fails a run.
    SKIP = "SKIP"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix,
        }


# -- HTTP ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What a server said: a status (and body), or the network problem in plain words."""

    status: int | None
    body: bytes = b""
    problem: str | None = None
    timed_out: bool = False
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


def describe_network_error(error: BaseException, timeout: float) -> tuple[str, bool, bool]:
    """(plain description, timed out, refused), walking the wrapped causes urllib and
    urllib3 hide the real error behind."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    if any(isinstance(e, ConnectionRefusedError) for e in seen):
        return "connection refused", False, True
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in seen):
        return f"no answer within {timeout:g}s", True, False
    if any(isinstance(e, socket.gaierror) for e in seen):
        return "the host name does not resolve", False, False
    if any(isinstance(e, ssl.SSLError) for e in seen):
        return f"TLS failed ({error})", False, False
    return f"{type(error).__name__}: {error}", False, False


def http_request(
    url: str,
    *,
    timeout: float,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpAnswer:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpAnswer(status=response.status, body=response.read())
    except urllib.error.HTTPError as error:
        return HttpAnswer(status=error.code, body=error.read())
    except (OSError, ValueError) as error:
        problem, timed_out, refused = describe_network_error(error, timeout)
        return HttpAnswer(status=None, problem=problem, timed_out=timed_out, refused=refused)


def display_url(url: str) -> str:
    """The URL without any user:password part, which must not reach a terminal or a log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
