"""Agents: CRUD behind a read-through cache, and the critical `execute` route."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field

from demo.config import Principal
from demo.services import (
    ModelProviderRejected,
    ModelProviderUnavailable,
    Services,
    get_principal,
    get_services,
)
from telemetry import set_context, start_span, start_transaction

logger = logging.getLogger("demo.agents")
router = APIRouter(prefix="/api/v1/agents", tags=["agents"])

ModelName = Literal["claude-3-haiku", "claude-3-sonnet", "gpt-4o-mini", "llama-3-8b"]
ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


class AgentIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    model: ModelName = "claude-3-haiku"
    instructions: str = Field(default="", max_length=4000)


class AgentPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    model: ModelName | None = None
    instructions: str | None = Field(default=None, max_length=4000)


class ExecuteIn(BaseModel):
    agent_id: int = Field(ge=1)
    input: str = Field(min_length=1, max_length=8000)
    max_tokens: int = Field(default=128, ge=1, le=4096)
    # Lets the demo (and the load generator) ask the model provider to fail, so a failing
    # request can be followed through every sink on purpose instead of by luck.
    simulate: Literal["provider_unavailable"] | None = None


@router.get("")
async def list_agents(
    services: ServicesDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    agents = await services.repo.list(principal.tenant_id, limit, offset)
    return {"items": [agent.to_dict() for agent in agents], "limit": limit, "offset": offset}


@router.post("", status_code=201)
async def create_agent(
    body: AgentIn, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    agent = await services.repo.create(
        principal.tenant_id, body.name, body.model, body.instructions
    )
    logger.info("agent created", extra={"agent_id": agent.id})
    return agent.to_dict()


@router.post("/execute")
async def execute_agent(
    body: ExecuteIn, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    started = time.perf_counter()
    with start_transaction(name="agent.execute", op="agent"):
        with start_span(op="db.query", description="load agent"):
            agent = await _load_agent(services, principal.tenant_id, body.agent_id)
        if agent is None:
            raise HTTPException(status_code=404, detail=f"agent {body.agent_id} not found")
        set_context(
            "agent_execution",
            {"agent_id": agent["id"], "model": agent["model"], "input_chars": len(body.input)},
        )
        logger.info("agent execution started", extra={"agent_id": agent["id"]})
        with start_span(op="llm.call", description=f"complete with {agent['model']}"):
            completion = await _complete(services, agent, body)
        services.spawn(
            _record_execution(services, principal.tenant_id, agent["id"]),
            name=f"record-execution-{agent['id']}",
        )
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info("agent execution finished", extra={"agent_id": agent["id"]})
    return {
        "agent_id": agent["id"],
        "output": completion["completion"],
        "usage": completion["usage"],
        "elapsed_ms": elapsed_ms,
    }


@router.get("/{agent_id}")
async def get_agent(
    agent_id: int, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    agent = await _load_agent(services, principal.tenant_id, agent_id)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
    return agent


@router.patch("/{agent_id}")
async def update_agent(
    agent_id: int, body: AgentPatch, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    agent = await services.repo.update(principal.tenant_id, agent_id, changes)
    if agent is None:
        raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
    await services.cache.invalidate(principal.tenant_id, agent_id)
    return agent.to_dict()


@router.delete("/{agent_id}", status_code=204)
async def delete_agent(agent_id: int, services: ServicesDep, principal: PrincipalDep) -> Response:
    if not await services.repo.delete(principal.tenant_id, agent_id):
        raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
    await services.cache.invalidate(principal.tenant_id, agent_id)
    return Response(status_code=204)


async def _load_agent(services: Services, tenant_id: str, agent_id: int) -> dict[str, Any] | None:
    cached = await services.cache.get(tenant_id, agent_id)
    if cached is not None:
        return cached
    agent = await services.repo.get(tenant_id, agent_id)
    if agent is None:
        return None
    value = agent.to_dict()
    await services.cache.set(tenant_id, agent_id, value)
    return value


async def _complete(services: Services, agent: dict[str, Any], body: ExecuteIn) -> dict[str, Any]:
    headers = {"X-Simulate-Fault": "unavailable"} if body.simulate else {}
    payload = {
        "model": agent["model"],
        "prompt": f"{agent['instructions']}\n\n{body.input}",
        "max_tokens": body.max_tokens,
    }
    try:
        response = await services.provider.post("/v1/complete", json=payload, headers=headers)
    except httpx.TransportError as exc:
        raise ModelProviderUnavailable(f"model provider unreachable: {exc!r}") from exc
    if response.status_code >= 500:
        logger.warning("model provider failed", extra={"status_code": response.status_code})
        raise ModelProviderUnavailable(
            f"model provider returned {response.status_code} for model {agent['model']}"
        )
    if response.is_error:
        raise ModelProviderRejected(
            f"model provider rejected the request: {response.status_code} {response.text[:200]}"
        )
    result: dict[str, Any] = response.json()
    return result


async def _record_execution(services: Services, tenant_id: str, agent_id: int) -> None:
    # Runs after the response is sent: the span it records ends after the request's own
    # server span, which is what trap 11 of the design is about.
    await asyncio.sleep(0.05)
    with start_span(op="agent.audit", description="record execution"):
        await services.repo.record_execution(agent_id)
        await services.cache.invalidate(tenant_id, agent_id)
