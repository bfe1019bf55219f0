"""A fake downstream model provider: `uvicorn demo.model_provider:app`.

It is a separate service with its own telemetry (service name `model-provider` unless
OTEL_SERVICE_NAME says otherwise), so a demo execution is one trace across two processes:
its server span is the child of the demo API's HTTPX client span.

Environment: MODEL_PROVIDER_LATENCY_MS (mean latency, default 40),
MODEL_PROVIDER_FAILURE_RATE (share of random 503s, default 0). A request with the header
`X-Simulate-Fault: unavailable` always gets a 503.

It speaks OpenAI's chat-completions API (`POST /v1/chat/completions`, usage included), so
the demo agent calls it with the official `openai` client: a request that offers tools and
carries no tool result yet is answered with a call of the first tool (the agent's tool
step), the next one with the final text. `POST /v1/complete` is the older plain endpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from typing import Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from telemetry import TelemetrySettings, setup_telemetry, start_span
from telemetry.settings import load_settings

logger = logging.getLogger("demo.model_provider")
SERVICE_NAME = "model-provider"

_WORDS = [
    "plan",
    "observe",
    "act",
    "reflect",
    "retrieve",
    "summarise",
    "verify",
    "tool",
    "call",
    "answer",
    "context",
    "reason",
    "draft",
    "critique",
    "refine",
]


class CompletionIn(BaseModel):
    model: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1, max_length=20_000)
    max_tokens: int = Field(default=128, ge=1, le=4096)


def fake_completion(prompt: str, max_tokens: int) -> str:
    # Deterministic per prompt, so repeated demo runs produce comparable output.
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(min(max_tokens, 24)))


class ChatMessage(BaseModel):
    role: str
    content: str | list[Any] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionIn(BaseModel):
    model: str = Field(min_length=1, max_length=64)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)


def _text_of(message: ChatMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return " ".join(
        str(part.get("text", "")) for part in message.content or [] if isinstance(part, dict)
    )


def chat_completion(body: ChatCompletionIn) -> dict[str, Any]:
    """An OpenAI chat.completion object: a tool call first when tools are offered, then the
    answer; usage counts words as tokens (deterministic, so runs are comparable)."""
    prompt = "\n".join(_text_of(m) for m in body.messages)
    prompt_tokens = len(prompt.split()) + 8 * len(body.messages)
    wants_tool = bool(body.tools) and not any(m.role == "tool" for m in body.messages)
    if wants_tool:
        tool = str((body.tools or [{}])[0].get("function", {}).get("name", "tool"))
        call_id = "call_" + hashlib.sha1(prompt.encode()).hexdigest()[:12]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{
                "id": call_id, "type": "function",
                "function": {"name": tool, "arguments": "{}"},
            }],
        }  # fmt: skip
        finish_reason, completion_tokens = "tool_calls", 12
    else:
        limit = body.max_completion_tokens or body.max_tokens or 128
        text = fake_completion(prompt, limit)
        message = {"role": "assistant", "content": text}
        finish_reason, completion_tokens = "stop", len(text.split())
    return {
        "id": f"chatcmpl-{hashlib.sha1(prompt.encode()).hexdigest()[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def create_app(settings: TelemetrySettings | None = None) -> FastAPI:
    if settings is None:
        # Its own service name by default: without it both services would report as the
        # platform and the cross-process trace would look like one service talking to itself.
        settings = (
            load_settings()
            if os.environ.get("OTEL_SERVICE_NAME")
            else load_settings(service_name=SERVICE_NAME)
        )
    latency_ms = float(os.environ.get("MODEL_PROVIDER_LATENCY_MS", "40"))
    failure_rate = float(os.environ.get("MODEL_PROVIDER_FAILURE_RATE", "0"))
    app = FastAPI(title="Model provider (telemetry demo)", version="1.0.0")

    @app.post("/v1/complete", response_model=None)
    async def complete(
        body: CompletionIn,
        x_simulate_fault: str | None = Header(default=None),
    ) -> dict[str, Any] | JSONResponse:
        started = time.perf_counter()
        with start_span(op="model.inference", description=f"generate {body.model}"):
            await asyncio.sleep(max(0.0, random.gauss(latency_ms, latency_ms / 4)) / 1000)
            if x_simulate_fault == "unavailable" or random.random() < failure_rate:
                logger.warning("model overloaded, refusing completion", extra={"model": body.model})
                return JSONResponse(
                    {"error": "model_overloaded", "detail": f"{body.model} is at capacity"},
                    status_code=503,
                    headers={"Retry-After": "1"},
                )
            text = fake_completion(body.prompt, body.max_tokens)
        logger.info("completion served", extra={"model": body.model})
        return {
            "id": f"cmpl-{hashlib.sha1(text.encode()).hexdigest()[:12]}",
            "model": body.model,
            "completion": text,
            "usage": {
                "prompt_tokens": len(body.prompt.split()),
                "completion_tokens": len(text.split()),
            },
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionIn,
        x_simulate_fault: str | None = Header(default=None),
    ) -> dict[str, Any] | JSONResponse:
        with start_span(op="model.inference", description=f"generate {body.model}"):
            await asyncio.sleep(max(0.0, random.gauss(latency_ms, latency_ms / 4)) / 1000)
            if x_simulate_fault == "unavailable" or random.random() < failure_rate:
                logger.warning("model overloaded, refusing completion", extra={"model": body.model})
                return JSONResponse(
                    {"error": {"message": f"{body.model} is at capacity",
                               "type": "model_overloaded"}},
                    status_code=503,
                    headers={"Retry-After": "1"},
                )  # fmt: skip
            result = chat_completion(body)
        logger.info("chat completion served", extra={"model": body.model})
        return result

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    # setup_telemetry also flushes on shutdown: the demo stops this process with SIGTERM.
    app.state.telemetry = setup_telemetry(app, settings)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access (uvicorn's and gunicorn's "module:app" lookup is a
    # getattr), not at import: importing this module for create_app() in a test or a tool
    # must not initialise the process-wide telemetry pipeline from whatever env is around.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
