"""Agents: CRUD behind a read-through cache, and the critical `execute` route, which runs the
agent: the official OpenAI client against the model provider, with one tool step."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any, Literal

import openai
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
from telemetry import set_context, start_agent, start_span, start_tool, start_transaction

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
        # invoke_agent -> chat (the OpenAI instrumentation) -> execute_tool -> chat.
        with start_agent(
            agent["name"], model=agent["model"], provider="openai", agent_id=str(agent["id"])
        ):
            completion = await _run_agent(services, principal.tenant_id, agent, body)
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


#: The one tool of the demo agent: what it knows about itself, read through the cache.
AGENT_TOOLS: list[dict[str, Any]] = [{
    "type": "function",
    "function": {
        "name": "agent_profile",
        "description": "The agent's own configuration and execution count.",
        "parameters": {"type": "object", "properties": {}},
    },
}]  # fmt: skip


async def _run_agent(
    services: Services, tenant_id: str, agent: dict[str, Any], body: ExecuteIn
) -> dict[str, Any]:
    """One agent step: ask the model (offering the tool), run the tool it calls, ask again."""
    extra_headers = {"X-Simulate-Fault": "unavailable"} if body.simulate else None
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": agent["instructions"] or "You are a helpful agent."},
        {"role": "user", "content": body.input},
    ]
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    first = await _chat(services, agent, messages, body, tools=AGENT_TOOLS, headers=extra_headers)
    _add_usage(usage, first)
    choice = first.choices[0].message
    for call in choice.tool_calls or []:
        name = getattr(getattr(call, "function", None), "name", "unknown")
        with start_tool(name, call_id=call.id, description="the agent's own profile"):
            profile = await _load_agent(services, tenant_id, int(agent["id"]))
            result = {"name": (profile or {}).get("name"), "model": (profile or {}).get("model")}
        messages += [
            choice.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
        ]
    if choice.tool_calls:
        final = await _chat(services, agent, messages, body)
        _add_usage(usage, final)
    else:
        final = first
    return {"completion": final.choices[0].message.content or "", "usage": usage}


async def _chat(
    services: Services,
    agent: dict[str, Any],
    messages: list[dict[str, Any]],
    body: ExecuteIn,
    tools: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    options: dict[str, Any] = {"tools": tools} if tools else {}
    try:
        return await services.llm.chat.completions.create(
            model=agent["model"],
            messages=messages,  # type: ignore[arg-type]
            max_tokens=body.max_tokens,
            extra_headers=headers,
            **options,
        )
    except openai.APIConnectionError as exc:
        raise ModelProviderUnavailable(f"model provider unreachable: {exc!r}") from exc
    except openai.APIStatusError as exc:
        if exc.status_code >= 500:
            logger.warning("model provider failed", extra={"status_code": exc.status_code})
            raise ModelProviderUnavailable(
                f"model provider returned {exc.status_code} for model {agent['model']}"
            ) from exc
        raise ModelProviderRejected(
            f"model provider rejected the request: {exc.status_code} {exc.message[:200]}"
        ) from exc


def _add_usage(total: dict[str, int], response: Any) -> None:
    if response.usage is not None:
        total["prompt_tokens"] += response.usage.prompt_tokens
        total["completion_tokens"] += response.usage.completion_tokens


async def _record_execution(services: Services, tenant_id: str, agent_id: int) -> None:
    # Runs after the response is sent: the span it records ends after the request's own
    # server span, which is what trap 11 of the design is about.
    await asyncio.sleep(0.05)
    with start_span(op="agent.audit", description="record execution"):
        await services.repo.record_execution(agent_id)
        await services.cache.invalidate(tenant_id, agent_id)
