"""Demo service configuration, read from the environment (twelve-factor style)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MODEL_PROVIDER_URL = "http://127.0.0.1:8001"

# Built-in demo credentials: key -> (user id, tenant, email). Real deployments set
# DEMO_API_KEYS instead; these exist so `python -m demo` and the load generator work with no
# configuration. The key is a secret: it is used for the lookup and never stored anywhere.
BUILTIN_API_KEYS: dict[str, tuple[str, str, str]] = {
    "demo-key-acme-3f9a7c": ("u-1001", "acme", "ada@acme.example"),
    "demo-key-globex-8b2d41": ("u-2002", "globex", "grace@globex.example"),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: what the authentication middleware resolves an API key to."""

    user_id: str
    tenant_id: str
    # Out of the repr: a principal shows up in captured frame locals, an email is PII.
    email: str | None = field(default=None, repr=False)

    @property
    def username(self) -> str:
        return self.email.split("@", 1)[0] if self.email else self.user_id


def parse_api_keys(raw: str) -> dict[str, Principal]:
    """Parse `key:user_id:tenant[:email]` entries separated by commas."""
    keys: dict[str, Principal] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (3, 4) or not all(parts[:3]):
            # The entry is deliberately not echoed: it contains a secret.
            raise ValueError(
                "DEMO_API_KEYS: each entry must be key:user_id:tenant[:email] "
                f"(entry #{len(keys) + 1} is malformed)"
            )
        keys[parts[0]] = Principal(parts[1], parts[2], parts[3] if len(parts) == 4 else None)
    return keys


def async_database_url(url: str) -> str:
    """Map a plain SQLAlchemy URL to its asyncio driver (the service is async end to end)."""
    for plain, async_prefix in (
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return async_prefix + url[len(plain) :]
    return url


@dataclass(frozen=True)
class DemoConfig:
    database_url: str
    redis_url: str | None
    model_provider_url: str
    api_keys: dict[str, Principal] = field(repr=False)
    cache_ttl_seconds: int = 30
    # The key the OpenAI client sends to the model provider (Authorization: Bearer): a
    # secret that must reach the provider and no telemetry sink.
    model_provider_api_key: str = field(default="demo-provider-key", repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DemoConfig:
        source = os.environ if env is None else env
        default_db = f"sqlite+aiosqlite:///{Path.cwd() / 'demo-agents.db'}"
        raw_keys = source.get("DEMO_API_KEYS", "")
        keys = (
            parse_api_keys(raw_keys)
            if raw_keys.strip()
            else {key: Principal(*value) for key, value in BUILTIN_API_KEYS.items()}
        )
        return cls(
            database_url=async_database_url(source.get("DATABASE_URL") or default_db),
            redis_url=source.get("REDIS_URL") or None,
            model_provider_url=(
                source.get("MODEL_PROVIDER_URL") or DEFAULT_MODEL_PROVIDER_URL
            ).rstrip("/"),
            api_keys=keys,
            cache_ttl_seconds=int(source.get("DEMO_CACHE_TTL_SECONDS", "30")),
            model_provider_api_key=source.get("MODEL_PROVIDER_API_KEY") or "demo-provider-key",
        )
