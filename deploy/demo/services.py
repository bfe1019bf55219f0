"""The per-process resources the routes share, kept on `app.state.services`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import HTTPException, Request
from openai import AsyncOpenAI
from sqlalchemy.ext.asyncio import AsyncEngine

from demo.cache import AgentCache
from demo.config import DemoConfig, Principal
from demo.db import AgentRepository

logger = logging.getLogger("demo.services")


class ModelProviderUnavailable(RuntimeError):
    """The downstream model provider refused the completion (a 5xx or a transport error).

    Its own type, rather than httpx.HTTPStatusError: the latter is on the ignore list of the
    error tracker, and an outage of a dependency is exactly what must reach it.
    """


class ModelProviderRejected(RuntimeError):
    """The model provider refused our request (a 4xx): a bug on our side of the contract."""


@dataclass
class Services:
    config: DemoConfig
    engine: AsyncEngine
    repo: AgentRepository
    cache: AgentCache
    provider: httpx.AsyncClient
    # The official OpenAI client, pointed at the model provider's chat-completions API.
    llm: AsyncOpenAI
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Start work that outlives the request.

        asyncio.create_task copies the current context, so the task's spans stay in the
        request's trace even though they end after the response is sent. The strong
        reference keeps the task from being garbage-collected mid-flight.
        """
        task = asyncio.create_task(work, name=name)
        self.background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float = 5.0) -> None:
        if self.background:
            await asyncio.wait(list(self.background), timeout=timeout)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_principal(request: Request) -> Principal:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        # Only reachable if a route is mounted outside the authenticated prefix by mistake.
        raise HTTPException(status_code=401, detail="missing API key")
    return principal
