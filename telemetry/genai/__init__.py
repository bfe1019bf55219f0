"""Agent observability: LLM calls, agent runs and tool calls as OpenTelemetry GenAI spans,
Prometheus series (tokens, cost, duration, tool errors) and Sentry AI-view data.

Public surface (also re-exported from ``telemetry``): ``start_agent``, ``start_tool``,
``start_llm_call``; the price table in ``telemetry.genai.prices``.

Message-JSON truncation lives with the scrubbing policy (``telemetry.scrubbing.messages``),
which depends on nothing.
"""

from telemetry.genai.facade import (
    AgentRun,
    LLMCall,
    ToolCall,
    start_agent,
    start_llm_call,
    start_tool,
)
from telemetry.genai.prices import ModelPrice, PriceTable
from telemetry.genai.setup import setup_genai

__all__ = [
    "AgentRun",
    "LLMCall",
    "ModelPrice",
    "PriceTable",
    "ToolCall",
    "setup_genai",
    "start_agent",
    "start_llm_call",
    "start_tool",
]
