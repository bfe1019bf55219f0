"""Agent, tool and LLM-call spans for code that no instrumentation covers, following the
OpenTelemetry GenAI semantic conventions, so Sentry's AI views, Jaeger and the Prometheus
series see the same structure the official instrumentations produce::

    with start_agent("planner", model="gpt-4o-mini", provider="openai"):
        reply = client.chat.completions.create(...)      # instrumented: a `chat` span
        with start_tool("search_docs") as tool:
            hits = search(query)
        with start_llm_call(model="my-model", provider="in-house") as call:
            out = my_client.generate(...)                # not instrumented: the facade's span
            call.set_usage(input_tokens=out.prompt_tokens, output_tokens=out.output_tokens)

Spans are named ``invoke_agent <name>``, ``execute_tool <name>`` and ``<operation> <model>``
and carry ``gen_ai.operation.name``; none carries ``sentry.op``: Relay derives the Sentry op
(``gen_ai.invoke_agent``, ``gen_ai.execute_tool``, ``gen_ai.chat``) from the operation name,
and a forced op would hide the span from the AI views. In envelope mode the bridge sets the
same op (``telemetry.sentry``).

An exception leaving a block marks the span (status error, ``error.type``, the exception
event) and is sent to Sentry once, from the innermost GenAI span it crossed, while that span
is current: the event carries the trace id and the span id of the tool or call that failed.
It is re-raised unchanged.

Do not wrap a call the official instrumentations already trace in ``start_llm_call``: the
call would be counted twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry.genai import _conventions as gc
from telemetry.genai.metrics import AGENT_KEY, active_metrics, current_agent

__all__ = ["AgentRun", "LLMCall", "ToolCall", "start_agent", "start_llm_call", "start_tool"]


def _tracer() -> trace.Tracer:
    # Looked up per call: setup_telemetry binds the facade's tracer to its provider later.
    from telemetry import api

    return api.tracer()


def error_type(exc: BaseException) -> str:
    """``error.type`` as the GenAI instrumentations write it: the exception's qualified
    type name, builtins unqualified (so it matches the exception event's type)."""
    kind = type(exc)
    module = kind.__module__
    if module in ("builtins", "__main__"):
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


@dataclass
class _GenAISpan:
    span: trace.Span
    error_type: str | None = field(default=None, init=False)

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)


@dataclass
class AgentRun(_GenAISpan):
    """The running agent (``invoke_agent`` span)."""

    name: str = ""


@dataclass
class ToolCall(_GenAISpan):
    """One tool execution (``execute_tool`` span)."""

    name: str = ""


@dataclass
class LLMCall(_GenAISpan):
    """One LLM call made by a client no instrumentation covers; report its usage."""

    model: str = ""
    provider: str = ""
    operation: str = gc.CHAT
    response_model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_output_tokens: int = 0

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        cached_input_tokens: int | None = None,
        reasoning_output_tokens: int | None = None,
    ) -> None:
        """Token counts as the provider reported them (cached and reasoning tokens are
        included in input and output tokens, as in the conventions)."""
        for attr, key, value in (
            ("input_tokens", gc.USAGE_INPUT_TOKENS, input_tokens),
            ("output_tokens", gc.USAGE_OUTPUT_TOKENS, output_tokens),
            ("cached_input_tokens", gc.USAGE_CACHE_READ_INPUT_TOKENS, cached_input_tokens),
            ("reasoning_output_tokens", gc.USAGE_REASONING_OUTPUT_TOKENS,
             reasoning_output_tokens),
        ):  # fmt: skip
            if value is not None:
                setattr(self, attr, int(value))
                self.span.set_attribute(key, int(value))

    def set_response(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        finish_reasons: Sequence[str] | None = None,
    ) -> None:
        if model:
            self.response_model = model
            self.span.set_attribute(gc.RESPONSE_MODEL, model)
        if response_id:
            self.span.set_attribute(gc.RESPONSE_ID, response_id)
        if finish_reasons:
            self.span.set_attribute(gc.RESPONSE_FINISH_REASONS, list(finish_reasons))


def _attributes(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _fail(handle: _GenAISpan, exc: BaseException, context: dict[str, Any]) -> None:
    """Mark the span and send the exception to Sentry, once, while the span is current."""
    from telemetry import api

    kind = error_type(exc)
    handle.error_type = kind
    span = handle.span
    span.set_attribute(gc.ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {exc}"))
    if getattr(exc, gc.REPORTED_EXCEPTION_ATTRIBUTE, False):
        span.record_exception(exc, attributes={"exception.escaped": True})
        return
    # Records the exception event on the current span (this one) and sends the Sentry event
    # under this span's trace and span id; the GenAI names are its context and its tags (tags
    # are what an issue search, and the Agents dashboard's links, can filter on).
    with sentry_sdk.new_scope() as scope:
        for key, value in context.items():
            scope.set_tag(key, value)
        api.capture_exception(exc, **context)
    # The bridge's before_send marks the exception with the sent event's id, and drops later
    # captures of it (the request's 500 handler runs in another context, where sentry-sdk's
    # dedupe cannot see this one). When the event was filtered, it is marked here all the
    # same: one failure, one report. Exceptions with __slots__ cannot be marked.
    if not getattr(exc, gc.REPORTED_EXCEPTION_ATTRIBUTE, False):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, gc.REPORTED_EXCEPTION_ATTRIBUTE, True)


@contextmanager
def _run(handle: _GenAISpan, context: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        _fail(handle, exc, context)
        raise


@contextmanager
def start_agent(
    name: str,
    *,
    model: str | None = None,
    provider: str | None = None,
    agent_id: str | None = None,
    description: str | None = None,
    conversation_id: str | None = None,
) -> Iterator[AgentRun]:
    """An agent invocation: ``invoke_agent <name>``; LLM calls and tools inside it nest
    under it and their metrics carry ``agent=<name>``."""
    attributes = _attributes(**{
        gc.OPERATION_NAME: gc.INVOKE_AGENT, gc.AGENT_NAME: name, gc.AGENT_ID: agent_id,
        gc.AGENT_DESCRIPTION: description, gc.REQUEST_MODEL: model, gc.PROVIDER_NAME: provider,
        gc.CONVERSATION_ID: conversation_id,
    })  # fmt: skip
    token = otel_context.attach(otel_context.set_value(AGENT_KEY, name))
    started = time.perf_counter()
    try:
        with _tracer().start_as_current_span(
            f"{gc.INVOKE_AGENT} {name}", kind=SpanKind.INTERNAL, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            run = AgentRun(span, name=name)
            try:
                with _run(run, {gc.OPERATION_NAME: gc.INVOKE_AGENT, gc.AGENT_NAME: name}):
                    yield run
            finally:
                metrics = active_metrics()
                if metrics is not None:
                    metrics.record_agent_run(
                        agent=name, duration_s=time.perf_counter() - started,
                        error_type=run.error_type,
                    )  # fmt: skip
    finally:
        otel_context.detach(token)


@contextmanager
def start_tool(
    name: str,
    *,
    tool_type: str | None = "function",
    call_id: str | None = None,
    description: str | None = None,
) -> Iterator[ToolCall]:
    """A tool execution: ``execute_tool <name>``, counted in ``gen_ai_tool_calls_total``."""
    agent = current_agent()
    attributes = _attributes(**{
        gc.OPERATION_NAME: gc.EXECUTE_TOOL, gc.TOOL_NAME: name, gc.TOOL_TYPE: tool_type,
        gc.TOOL_CALL_ID: call_id, gc.TOOL_DESCRIPTION: description, gc.AGENT_NAME: agent,
    })  # fmt: skip
    started = time.perf_counter()
    with _tracer().start_as_current_span(
        f"{gc.EXECUTE_TOOL} {name}", kind=SpanKind.INTERNAL, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        call = ToolCall(span, name=name)
        try:
            context = {gc.OPERATION_NAME: gc.EXECUTE_TOOL, gc.TOOL_NAME: name}
            if agent:
                context[gc.AGENT_NAME] = agent
            with _run(call, context):
                yield call
        finally:
            metrics = active_metrics()
            if metrics is not None:
                metrics.record_tool_call(
                    tool=name, duration_s=time.perf_counter() - started,
                    error_type=call.error_type, agent=agent,
                )  # fmt: skip


@contextmanager
def start_llm_call(
    model: str,
    *,
    provider: str,
    operation: str = gc.CHAT,
    server_address: str | None = None,
    server_port: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> Iterator[LLMCall]:
    """An LLM call by a client no instrumentation covers: ``<operation> <model>`` (a CLIENT
    span, as the instrumentations make it); report usage with ``set_usage``."""
    attributes = _attributes(**{
        gc.OPERATION_NAME: operation, gc.PROVIDER_NAME: provider, gc.REQUEST_MODEL: model,
        gc.SERVER_ADDRESS: server_address, gc.SERVER_PORT: server_port,
        gc.REQUEST_MAX_TOKENS: max_tokens, gc.REQUEST_TEMPERATURE: temperature,
    })  # fmt: skip
    started = time.perf_counter()
    with _tracer().start_as_current_span(
        f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        call = LLMCall(span, model=model, provider=provider, operation=operation)
        try:
            context = {gc.OPERATION_NAME: operation, gc.REQUEST_MODEL: model,
                       gc.PROVIDER_NAME: provider}  # fmt: skip  # fmt: skip
            with _run(call, context):
                yield call
        finally:
            metrics = active_metrics()
            if metrics is not None:
                metrics.record_llm_call(
                    provider=provider, model=model, operation=operation,
                    duration_s=time.perf_counter() - started, error_type=call.error_type,
                )  # fmt: skip
                metrics.record_tokens(
                    provider=provider, model=model, input_tokens=call.input_tokens,
                    output_tokens=call.output_tokens,
                    cached_input_tokens=call.cached_input_tokens,
                    reasoning_output_tokens=call.reasoning_output_tokens,
                )  # fmt: skip
