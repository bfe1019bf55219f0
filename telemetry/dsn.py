"""Sentry DSNs: parsed once at start, printed only without their key."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sentry_sdk.utils import Auth, BadDsn, Dsn

__all__ = ["ParsedDsn", "normalise_dsn", "parse_dsn"]


@dataclass(frozen=True, slots=True)
class ParsedDsn:
    scheme: str
    public_key: str
    host: str
    path_prefix: str
    project_id: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path_prefix}"

    @property
    def redacted(self) -> str:
        """The DSN without its key: safe for logs."""
        return f"{self.scheme}://***@{self.host}{self.path_prefix}/{self.project_id}"

    def auth_header(self, client: str | None = None) -> str:
        """The ``X-Sentry-Auth`` value for this DSN, as sentry-sdk builds it."""
        auth = Auth(
            scheme=self.scheme,
            host=self.host,
            project_id=self.project_id,
            public_key=self.public_key,
            client=client,
            path=f"{self.path_prefix}/",
        )
        return auth.to_header()

    @property
    def otlp_traces_url(self) -> str:
        return f"{self.base_url}/api/{self.project_id}/integration/otlp/v1/traces"


def normalise_dsn(dsn: str) -> str:
    """The DSN as sentry-sdk takes it: surrounding blanks and a trailing ``/`` after the
    project id removed (``https://key@host/1/`` is what some UIs copy; sentry-sdk's own
    parser rejects it with a bare ``BadDsn``)."""
    text = dsn.strip()
    parts = urlsplit(text)
    if parts.path.endswith("/") and parts.path.strip("/"):
        text = parts._replace(path=parts.path.rstrip("/")).geturl()
    return text


def parse_dsn(dsn: str) -> ParsedDsn:
    """Parse a Sentry DSN as sentry-sdk will (after :func:`normalise_dsn`); ValueError with
    the reason when it is malformed, so ``telemetry doctor`` and start-up agree with the
    SDK instead of the service stopping later on sentry-sdk's ``BadDsn``."""
    dsn = normalise_dsn(dsn)
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with https:// or http://")
    if not parts.username:
        raise ValueError("has no public key (expected https://<key>@<host>/<project id>)")
    if not parts.hostname:
        raise ValueError("has no host")
    path = parts.path.rstrip("/")
    prefix, _, project_id = path.rpartition("/")
    if not project_id.isdigit():
        raise ValueError("must end with a numeric project id")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    try:
        Dsn(dsn)
    except BadDsn as exc:
        raise ValueError(f"is not accepted by sentry-sdk: {exc}") from None
    return ParsedDsn(parts.scheme, parts.username, host, prefix, project_id)
