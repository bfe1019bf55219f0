from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk


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

    yield start
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.init()
