"""Agent observability end to end: a FastAPI route runs an agent that calls a local
OpenAI-compatible server through the official ``openai`` client (traced by the official
OpenTelemetry instrumentation) and runs a tool; the OTLP receiver stands in for Jaeger, the
Sentry receiver for Sentry (OTLP spans, envelopes, events), and ``/metrics`` is scraped."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from openai import OpenAI

from telemetry import TelemetryHandle, TelemetrySettings, setup_telemetry, start_agent, start_tool
from tests.integration._service import Server, call
from tests.support.openai_stub import OpenAIStub
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.sentry_receiver import SentryReceiver

API_KEY = "sk-proj-GenAiTestKey0123456789abcdefXYZ"
TOOLS = [{
    "type": "function",
    "function": {
        "name": "service_status",
        "description": "Status of a service",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}]  # fmt: skip


class ToolFailed(RuntimeError):
    pass


def build_app(base_url: str) -> FastAPI:
    app = FastAPI()
    client = OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0)

    def run_agent(model: str, fail_tool: bool, history: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * 300}
            for i in range(history)
        ]
        messages.append({"role": "user", "content": "Is the checkout service up?"})
        with start_agent("support-agent", model=model, provider="openai"):
            first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)  # type: ignore[arg-type]
            call_ = first.choices[0].message.tool_calls[0]  # type: ignore[index]
            with start_tool(call_.function.name, call_id=call_.id):  # type: ignore[union-attr]
                if fail_tool:
                    raise ToolFailed("status backend unreachable")
                result = {"checkout": "up"}
            messages += [
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call_.id, "content": json.dumps(result)},
            ]
            final = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        return {"answer": final.choices[0].message.content}

    @app.post("/api/v1/agents/run")
    def run(model: str = "gpt-4o-mini", fail_tool: bool = False, history: int = 0) -> Any:
        return run_agent(model, fail_tool, history)

    return app


@contextmanager
def agent_service(settings: TelemetrySettings) -> Iterator[tuple[str, TelemetryHandle]]:
    with OpenAIStub() as stub:
        handle = setup_telemetry(None, settings)
        try:
            app = build_app(stub.base_url)
            handle.instrument_app(app)
            with Server(app) as server:
                yield server.url, handle
            assert stub.requests, "the agent never reached the model provider"
            # The key did reach the provider: its absence from every sink below is scrubbing
            # and instrumentation restraint, not a key that was never used.
            assert any(API_KEY in str(headers).replace("'", "") for headers, _ in stub.requests)
        finally:
            handle.shutdown()


def settings_for(
    otlp: OTLPReceiver, sentry: SentryReceiver, mode: str, **overrides: Any
) -> TelemetrySettings:
    values: dict[str, Any] = {
        "environment": "staging",
        "service_name": "agents-test",
        "service_version": "1.0.0",
        "sentry_dsn": sentry.dsn,
        "sentry_traces": mode,
        "otlp_endpoint": otlp.url,
        "log_format": "json",
    }
    return TelemetrySettings(**(values | overrides))


def metrics_text(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def trace_of(receiver: Any, spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    server = next(s for s in spans if s.kind == "SERVER" and "/agents/run" in s.name)
    return [s for s in spans if s.trace_id == server.trace_id]


def by_name(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    found: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def assert_agent_tree(spans: list[ReceivedSpan]) -> None:
    """server -> invoke_agent -> (chat, execute_tool, chat), one trace, GenAI attributes."""
    named = by_name(spans)
    server = next(s for s in spans if s.kind == "SERVER")
    (agent,) = named["invoke_agent support-agent"]
    chats = named["chat gpt-4o-mini"]
    (tool,) = named["execute_tool service_status"]
    assert {s.trace_id for s in spans} == {server.trace_id}
    assert agent.parent_span_id == server.span_id
    assert len(chats) == 2
    for span in (*chats, tool):
        assert span.parent_span_id == agent.span_id, span.name
    for chat in chats:
        attributes = chat.attributes
        assert chat.kind == "CLIENT"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2025-01-01"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "support-agent"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "service_status"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_1"
    # No forced op: Relay derives gen_ai.<operation> from gen_ai.operation.name only when
    # sentry.op is absent.
    for span in (agent, tool, *chats):
        assert "sentry.op" not in span.attributes, span.name


def test_agent_llm_and_tool_spans_reach_both_sinks_in_the_request_trace(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    with agent_service(settings_for(otlp_receiver, sentry_receiver, "otlp")) as (url, handle):
        status, body = call("POST", f"{url}/api/v1/agents/run")
        assert status == 200, body
        assert body == {"answer": "All systems nominal."}
        metrics = metrics_text(url)
        handle.force_flush()
        jaeger = otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
        sentry = sentry_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
        jaeger_trace = trace_of(otlp_receiver, otlp_receiver.spans(), "jaeger")
        sentry_trace = trace_of(sentry_receiver, sentry_receiver.otlp_spans(), "sentry")
        assert jaeger and sentry
        assert_agent_tree(jaeger_trace)
        assert_agent_tree(sentry_trace)
        assert {s.span_id for s in jaeger_trace} == {s.span_id for s in sentry_trace}

    # Token series by model, provider and agent; the LLM duration by model and operation.
    assert (
        'gen_ai_client_tokens_total{agent="support-agent",model="gpt-4o-mini",'
        'provider="openai",service="agents-test",token_type="input"}'
    ) in metrics
    assert 'token_type="output"' in metrics
    assert (
        'gen_ai_client_operation_duration_seconds_count{model="gpt-4o-mini",'
        'operation="chat",provider="openai",service="agents-test"} 2.0'
    ) in metrics
    assert 'gen_ai_client_cost_usd_total{agent="support-agent",model="gpt-4o-mini"' in metrics
    assert 'gen_ai_tool_calls_total{agent="support-agent",service="agents-test",' in metrics
    # The duration sample points at the sampled trace (exemplar).
    chat_trace = jaeger_trace[0].trace_id
    duration_lines = [
        line for line in metrics.splitlines()
        if line.startswith("gen_ai_client_operation_duration_seconds_bucket") and "#" in line
    ]  # fmt: skip
    assert any(f'trace_id="{chat_trace}"' in line for line in duration_lines), duration_lines

    # The API key went to the model provider and nowhere else.
    assert API_KEY.encode() not in otlp_receiver.raw_bytes()
    assert API_KEY.encode() not in sentry_receiver.raw_bytes()
    assert API_KEY not in metrics


def v2_spans(sentry: SentryReceiver) -> list[dict[str, Any]]:
    """Span items (v2) as sentry-sdk sends them, attribute values unwrapped."""
    spans = []
    for item in sentry.items("span"):
        for span in item["items"]:
            attributes = {k: v.get("value") for k, v in span.get("attributes", {}).items()}
            spans.append({**span, "attributes": attributes})
    return spans


def test_envelope_mode_gives_gen_ai_ops_and_the_ai_view_attributes(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    settings = settings_for(otlp_receiver, sentry_receiver, "envelope")
    with agent_service(settings) as (url, _):
        status, body = call("POST", f"{url}/api/v1/agents/run")
        assert status == 200, body
        (transaction,) = sentry_receiver.wait_for(
            "transaction", lambda t: "/agents/run" in str(t.get("transaction")), timeout=15
        )
    # sentry-sdk (2.75, stream_gen_ai_spans) sends the spans with a gen_ai.* op as span items
    # beside their transaction, as it does for its own AI integrations' spans.
    spans = v2_spans(sentry_receiver)
    ops = sorted(span["attributes"]["sentry.op"] for span in spans)
    assert ops == ["gen_ai.chat", "gen_ai.chat", "gen_ai.execute_tool", "gen_ai.invoke_agent"]
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert {span["trace_id"] for span in spans} == {trace_id}
    chat = next(span for span in spans if span["attributes"]["sentry.op"] == "gen_ai.chat")
    data = chat["attributes"]
    # What Sentry's AI views read (Relay adds the total and the cost from these).
    assert data["gen_ai.operation.name"] == "chat"
    assert data["gen_ai.request.model"] == "gpt-4o-mini"
    assert data["gen_ai.provider.name"] == "openai"
    assert data["gen_ai.usage.input_tokens"] > 0 and data["gen_ai.usage.output_tokens"] > 0
    assert data["sentry.segment.name"] == transaction["transaction"]
    agent = next(s for s in spans if s["attributes"]["sentry.op"] == "gen_ai.invoke_agent")
    assert agent["attributes"]["gen_ai.agent.name"] == "support-agent"
    assert chat["parent_span_id"] == agent["span_id"]
    assert agent["parent_span_id"] == transaction["contexts"]["trace"]["span_id"]
    assert API_KEY.encode() not in sentry_receiver.raw_bytes()
    assert API_KEY.encode() not in otlp_receiver.raw_bytes()


def test_a_failing_tool_is_an_error_span_a_sentry_event_in_its_trace_and_a_metric(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    with agent_service(settings_for(otlp_receiver, sentry_receiver, "otlp")) as (url, handle):
        status, _ = call("POST", f"{url}/api/v1/agents/run?fail_tool=true")
        assert status == 500
        metrics = metrics_text(url)
        handle.force_flush()
        otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
        (event,) = sentry_receiver.wait_for(
            "event", lambda e: "ToolFailed" in json.dumps(e.get("exception", {}))
        )
    tool = next(s for s in otlp_receiver.spans() if s.name == "execute_tool service_status")
    agent = next(s for s in otlp_receiver.spans() if s.name == "invoke_agent support-agent")
    error_type = f"{ToolFailed.__module__}.{ToolFailed.__qualname__}"
    assert tool.status_code == "ERROR" and tool.attributes["error.type"] == error_type
    assert [e.name for e in tool.events] == ["exception"]
    assert agent.status_code == "ERROR" and agent.attributes["error.type"] == error_type
    # One event, sent from the tool span: its trace and span, the GenAI context with it.
    trace_context = event["contexts"]["trace"]
    assert trace_context["trace_id"] == tool.trace_id
    assert trace_context["span_id"] == tool.span_id
    assert event["contexts"]["context"]["gen_ai.tool.name"] == "service_status"
    # Tags too: what an issue search (and the Agents dashboard's links) filters on.
    assert event["tags"]["gen_ai.tool.name"] == "service_status"
    assert event["tags"]["gen_ai.agent.name"] == "support-agent"
    assert len(sentry_receiver.events()) == 1, [
        e.get("exception") for e in sentry_receiver.events()
    ]
    assert (
        f'gen_ai_tool_errors_total{{agent="support-agent",error_type="{error_type}",'
        'service="agents-test",tool="service_status"} 1.0'
    ) in metrics


def test_a_failing_llm_call_is_an_error_span_and_counted(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    with agent_service(settings_for(otlp_receiver, sentry_receiver, "otlp")) as (url, handle):
        status, _ = call("POST", f"{url}/api/v1/agents/run?model=overloaded")
        assert status == 500
        metrics = metrics_text(url)
        handle.force_flush()
        chat = otlp_receiver.wait_for_spans(lambda s: s.name == "chat overloaded")[0]
        (event,) = sentry_receiver.wait_for("event")
    assert chat.status_code == "ERROR"
    assert chat.attributes["error.type"] in {"503", "openai.InternalServerError"}
    # Captured from the agent span (the instrumentation marks the span, the facade reports).
    assert event["tags"]["gen_ai.agent.name"] == "support-agent"
    assert event["contexts"]["trace"]["trace_id"] == chat.trace_id
    error_lines = [
        line for line in metrics.splitlines()
        if line.startswith("gen_ai_client_operation_errors_total{") and 'model="overloaded"' in line
    ]  # fmt: skip
    assert error_lines and error_lines[0].endswith(" 1.0"), error_lines


def test_captured_messages_are_scrubbed_and_truncated_to_valid_json(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    settings = settings_for(
        otlp_receiver, sentry_receiver, "otlp", genai_capture_content="span_only"
    )
    with agent_service(settings) as (url, handle):
        # 60 earlier turns of 300+ characters: far over the 8 KiB attribute limit.
        status, body = call("POST", f"{url}/api/v1/agents/run?history=60")
        assert status == 200, body
        handle.force_flush()
        otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
        sentry_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
    for receiver_spans in (otlp_receiver.spans(), sentry_receiver.otlp_spans()):
        first_chat = next(s for s in receiver_spans if s.name == "chat gpt-4o-mini")
        raw = first_chat.attributes["gen_ai.input.messages"]
        assert len(raw) <= 8 * 1024
        messages = json.loads(raw)  # valid JSON, not a byte cut
        # Whole old messages were dropped; the question being answered is kept, intact.
        assert 1 < len(messages) < 61
        assert messages[-1]["parts"][0]["content"] == "Is the checkout service up?"
        assert json.loads(first_chat.attributes["gen_ai.output.messages"])
    assert API_KEY.encode() not in otlp_receiver.raw_bytes()
    assert API_KEY.encode() not in sentry_receiver.raw_bytes()


@pytest.mark.parametrize("mode", ["no_content"])
def test_message_content_is_off_by_default(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, mode: str
) -> None:
    settings = settings_for(otlp_receiver, sentry_receiver, "otlp")
    assert settings.genai_capture_content == mode
    with agent_service(settings) as (url, handle):
        status, _ = call("POST", f"{url}/api/v1/agents/run")
        assert status == 200
        handle.force_flush()
        otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
    chats = [s for s in otlp_receiver.spans() if s.name == "chat gpt-4o-mini"]
    assert chats
    for chat in chats:
        assert not any(key.endswith(".messages") for key in chat.attributes), chat.attributes
    assert b"Is the checkout service up?" not in otlp_receiver.raw_bytes()
