"""API-key authentication as a pure ASGI middleware.

It runs inside the telemetry middlewares, so the user and tenant it sets land on the
request's own Sentry scope and OTel span. The key is only used as a lookup and never logged,
tagged or stored: it is a credential, and the telemetry scrubbing is a second line of defence,
not the first.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from demo.config import Principal
from telemetry import set_tag, set_user_context

API_KEY_HEADER = b"x-api-key"
PUBLIC_PREFIXES = ("/health/", "/metrics", "/docs", "/openapi.json")


class ApiKeyAuthMiddleware:
    def __init__(self, app: ASGIApp, keys: dict[str, Principal]) -> None:
        self.app = app
        self._keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        principal, problem = self._authenticate(scope)
        if principal is None:
            await _unauthorized(send, problem)
            return
        set_user_context(
            principal.user_id,
            email=principal.email,
            username=principal.username,
            tenant_id=principal.tenant_id,
        )
        set_tag("tenant", principal.tenant_id)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    def _authenticate(self, scope: Scope) -> tuple[Principal | None, str]:
        # A separate frame on purpose: the error tracker records the local variables of every
        # frame an exception passes through, and this one (the only one holding the key) has
        # returned before the request is handed on.
        for name, value in scope["headers"]:
            if name == API_KEY_HEADER:
                principal = self._keys.get(value.decode("latin-1"))
                return principal, "" if principal else "invalid API key"
        return None, "missing API key"


async def _unauthorized(send: Send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'ApiKey header="X-API-Key"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
