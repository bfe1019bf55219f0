"""Attribute names of the OpenTelemetry GenAI semantic conventions the bridge reads and writes.

A leaf module (imports nothing of the package), so the scrubbing policy can use the names
without pulling in the facade.
"""

from __future__ import annotations

from typing import Final

from telemetry import shared

OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_ID: Final = "gen_ai.agent.id"
AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
TOOL_NAME: Final = "gen_ai.tool.name"
TOOL_TYPE: Final = "gen_ai.tool.type"
TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# Well-known values of gen_ai.operation.name.
CHAT: Final = "chat"
INVOKE_AGENT: Final = "invoke_agent"
EXECUTE_TOOL: Final = "execute_tool"

# Metric instruments of opentelemetry-util-genai (what the official instrumentations record).
CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"

#: Set on an exception once the facade has sent it to Sentry from the GenAI span it escaped,
#: so the request-level capture of the same exception (a 500) is not a second event.
REPORTED_EXCEPTION_ATTRIBUTE: Final = shared.REPORTED_EVENT_ATTRIBUTE


def sentry_op(attributes: object) -> str | None:
    """The Sentry op Relay derives for an OTLP span from ``gen_ai.operation.name``
    (``gen_ai.chat``, ``gen_ai.invoke_agent``...), or None for a non-GenAI span."""
    get = getattr(attributes, "get", None)
    operation = get(OPERATION_NAME) if get is not None else None
    return f"gen_ai.{operation}" if isinstance(operation, str) and operation else None
