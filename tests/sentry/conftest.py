from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.scope import Scope, ScopeType, use_isolation_scope, use_scope


class Captured(sentry_sdk.transport.Transport):
    """Keeps every envelope item sentry-sdk would have sent, by item type."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.items: list[tuple[str, dict[str, Any]]] = []

    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            if item.payload.json is not None:
                self.items.append((item.type, item.payload.json))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [payload for item_type, payload in self.items if item_type == kind]


@pytest.fixture
def sentry() -> Iterator[Callable[..., Captured]]:
    """``sentry(**options)`` starts sentry-sdk with a capturing transport."""

    def start(**options: Any) -> Captured:
        options.setdefault("default_integrations", False)
        # A class, not an instance: sentry-sdk then gives it the options (and the parsed
        # DSN, without which the envelope span processor does nothing).
        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=Captured, **options)
        transport = sentry_sdk.get_client().transport
        assert isinstance(transport, Captured)
        return transport

    # Fresh scopes: another test's leftovers (a transaction name on the shared current
    # scope, a request's event processor) must not decide what these events carry.
    with (
        use_isolation_scope(Scope(ty=ScopeType.ISOLATION)),
        use_scope(Scope(ty=ScopeType.CURRENT)),
    ):
        yield start
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.init()
