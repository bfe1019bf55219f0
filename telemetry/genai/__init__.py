"""Agent observability: LLM calls, agent runs and tool calls as OpenTelemetry GenAI spans,
Prometheus series (tokens, cost, duration, tool errors) and Sentry AI-view data.

Public surface (also re-exported from ``telemetry``): ``start_agent``, ``start_tool``,
``start_llm_call``; the price table in ``telemetry.genai.prices``.

Attributes resolve lazily (PEP 562): the Sentry side imports the leaf ``_conventions`` of
this package and must not pull in the facade when it does. Message-JSON truncation lives
with the scrubbing policy (``telemetry._scrub_messages``), which depends on nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetry.genai.facade import (
        AgentRun,
        LLMCall,
        ToolCall,
        start_agent,
        start_llm_call,
        start_tool,
    )
    from telemetry.genai.prices import ModelPrice, PriceTable

__all__ = [
    "AgentRun",
    "LLMCall",
    "ModelPrice",
    "PriceTable",
    "ToolCall",
    "start_agent",
    "start_llm_call",
    "start_tool",
]

_WHERE = {
    "AgentRun": "facade",
    "LLMCall": "facade",
    "ToolCall": "facade",
    "start_agent": "facade",
    "start_llm_call": "facade",
    "start_tool": "facade",
    "ModelPrice": "prices",
    "PriceTable": "prices",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
