"""A read-through Redis cache for agents; a no-op when REDIS_URL is unset."""

from __future__ import annotations

import json
import logging
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger("demo.cache")


class AgentCache:
    """Caches one agent's JSON under `agent:<tenant>:<id>`.

    Redis is an optimisation here, never a dependency of correctness: an unreachable Redis
    degrades to a cache miss (logged) instead of failing the request.
    """

    def __init__(self, url: str | None, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._client: aioredis.Redis | None = (
            aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
            if url
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @staticmethod
    def _key(tenant_id: str, agent_id: int) -> str:
        return f"agent:{tenant_id}:{agent_id}"

    async def get(self, tenant_id: str, agent_id: int) -> dict[str, Any] | None:
        if self._client is None:
            return None
        try:
            raw = await self._client.get(self._key(tenant_id, agent_id))
        except RedisError as exc:
            logger.warning("cache read failed, falling back to the database: %s", exc)
            return None
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set(self, tenant_id: str, agent_id: int, value: dict[str, Any]) -> None:
        if self._client is None:
            return
        try:
            await self._client.set(self._key(tenant_id, agent_id), json.dumps(value), ex=self._ttl)
        except RedisError as exc:
            logger.warning("cache write failed: %s", exc)

    async def invalidate(self, tenant_id: str, agent_id: int) -> None:
        if self._client is None:
            return
        try:
            await self._client.delete(self._key(tenant_id, agent_id))
        except RedisError as exc:
            logger.warning("cache invalidation failed: %s", exc)

    async def ping(self) -> None:
        """Raise when Redis is configured but unreachable (the readiness probe's question)."""
        if self._client is not None:
            await self._client.ping()

    async def close(self) -> None:
        if self._client is not None:
            # types-redis predates aclose() (redis >= 5); close() is deprecated there.
            await self._client.aclose()  # type: ignore[attr-defined]
