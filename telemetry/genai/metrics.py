"""Prometheus series of LLM calls, agent runs and tool calls (names: docs/metrics.md).

Two sources feed the same series:

* the official GenAI instrumentations (OpenAI, Anthropic) record OpenTelemetry metrics
  (``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage``, ...) through
  opentelemetry-util-genai. The bridge has no OTel ``MeterProvider`` pipeline: it hands them
  :class:`GenAIMeterProvider`, whose instruments write straight into these prometheus-client
  series, with the same label guard and exemplars as the HTTP metrics;
* the facade (``start_llm_call``, ``start_tool``, ``start_agent``) records directly.

Every call is counted, sampled or not (a span processor would only see sampled spans);
an observation carries a ``{trace_id, span_id}`` exemplar only when its span is sampled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context, create_key, get_value
from opentelemetry.metrics import Meter, NoOpHistogram, NoOpMeter, NoOpMeterProvider
from opentelemetry.util.types import Attributes
from prometheus_client import Counter, Histogram

from telemetry.genai import _conventions as gc
from telemetry.genai.prices import PriceTable

if TYPE_CHECKING:
    from telemetry.metrics import TelemetryMetrics

__all__ = ["AGENT_KEY", "GenAIMeterProvider", "GenAIMetrics", "active_metrics"]

#: Context key under which ``start_agent`` keeps the running agent's name, so an LLM call
#: made inside it (by an instrumentation that knows nothing of agents) is attributed to it.
AGENT_KEY = create_key("telemetry.genai.agent")

NO_AGENT = "<none>"
UNKNOWN = "<unknown>"

# The advisory bounds of the GenAI semantic conventions (what util-genai declares), so the
# Prometheus histogram and an OTel backend's agree on what p95 means.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                     40.96, 81.92)  # fmt: skip
_AGENT_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)

_TOKENS = "gen_ai_client_tokens_total"
_COST = "gen_ai_client_cost_usd_total"
_DURATION = "gen_ai_client_operation_duration_seconds"
_ERRORS = "gen_ai_client_operation_errors_total"
_TOOL_CALLS = "gen_ai_tool_calls_total"
_TOOL_ERRORS = "gen_ai_tool_errors_total"
_TOOL_DURATION = "gen_ai_tool_duration_seconds"
_AGENT_DURATION = "gen_ai_agent_duration_seconds"
_AGENT_ERRORS = "gen_ai_agent_errors_total"


class _Active:
    metrics: GenAIMetrics | None = None


def active_metrics() -> GenAIMetrics | None:
    """The instance the facade records into (the one ``setup_telemetry`` built), if any."""
    return _Active.metrics


def _text(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def current_agent(context: Context | None = None) -> str | None:
    agent = get_value(AGENT_KEY, context)
    return agent if isinstance(agent, str) else None


class GenAIMetrics:
    """The GenAI series of one service, registered in its :class:`TelemetryMetrics`."""

    def __init__(self, metrics: TelemetryMetrics, prices: PriceTable | None = None) -> None:
        self._metrics = metrics
        self.prices = prices if prices is not None else PriceTable()
        r, service = metrics.registry, metrics.service
        self.service = service
        llm = ["service", "provider", "model"]
        self._tokens = Counter(
            "gen_ai_client_tokens", "Tokens used by LLM calls, by token type (input, output).",
            [*llm, "agent", "token_type"], registry=r,
        )  # fmt: skip
        self._cost = Counter(
            "gen_ai_client_cost_usd",
            "Estimated cost of LLM calls in USD, from the price table (telemetry.genai.prices).",
            [*llm, "agent"], registry=r,
        )  # fmt: skip
        self._duration = Histogram(
            _DURATION, "Duration of LLM calls (chat, embeddings...), errors included.",
            [*llm, "operation"], buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self._errors = Counter(
            "gen_ai_client_operation_errors", "LLM calls that failed, by error type.",
            [*llm, "operation", "error_type"], registry=r,
        )  # fmt: skip
        self._tool_calls = Counter(
            "gen_ai_tool_calls", "Tool executions.", ["service", "agent", "tool"], registry=r
        )
        self._tool_errors = Counter(
            "gen_ai_tool_errors", "Tool executions that failed, by error type.",
            ["service", "agent", "tool", "error_type"], registry=r,
        )  # fmt: skip
        self._tool_duration = Histogram(
            _TOOL_DURATION, "Duration of tool executions.", ["service", "tool"],
            buckets=_DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self._agent_duration = Histogram(
            _AGENT_DURATION, "Duration of agent invocations.", ["service", "agent"],
            buckets=_AGENT_BUCKETS, registry=r,
        )  # fmt: skip
        self._agent_errors = Counter(
            "gen_ai_agent_errors", "Agent invocations that failed, by error type.",
            ["service", "agent", "error_type"], registry=r,
        )  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------

    def activate(self) -> None:
        _Active.metrics = self

    def close(self) -> None:
        if _Active.metrics is self:
            _Active.metrics = None

    # -- helpers -----------------------------------------------------------------------

    def _bound(self, metric: str, label: str, value: str) -> str:
        return self._metrics.guard.bound(metric, label, value)

    def _exemplar(self, context: Context | None) -> dict[str, str] | None:
        """The exemplar of the call's own span (the context util-genai passes, else the
        current one), only when sampled; none in "kept" (collector) mode, where a plain
        sampled span may still be dropped by the tail sampler."""
        if self._metrics.exemplars_for != "sampled":
            return None
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid or not span_context.trace_flags.sampled:
            return None
        return {
            "trace_id": format(span_context.trace_id, "032x"),
            "span_id": format(span_context.span_id, "016x"),
        }

    def _inc(self, counter: Counter, name: str, values: tuple[str, ...], amount: float,
             exemplar: dict[str, str] | None) -> None:  # fmt: skip
        # TelemetryMetrics' child cache and shared exemplar store: the same mechanics as the
        # HTTP series (multiprocess mode included), not a second copy of them.
        self._metrics.count(counter, name, values, amount, exemplar)

    def _llm_labels(self, metric: str, provider: object, model: object) -> tuple[str, str, str]:
        return (
            self.service,
            self._bound(metric, "provider", _text(provider, UNKNOWN)),
            self._bound(metric, "model", _text(model, UNKNOWN)),
        )

    # -- recording ---------------------------------------------------------------------

    def record_llm_call(
        self, *, provider: str | None, model: str | None, operation: str, duration_s: float,
        error_type: str | None = None, context: Context | None = None,
    ) -> None:  # fmt: skip
        exemplar = self._exemplar(context)
        labels = self._llm_labels(_DURATION, provider, model)
        op = self._bound(_DURATION, "operation", _text(operation, UNKNOWN))
        self._metrics.observe(self._duration, (*labels, op), duration_s, exemplar)
        if error_type is not None:
            error = self._bound(_ERRORS, "error_type", error_type)
            self._metrics.child(self._errors, (*labels, op, error)).inc()

    def record_tokens(
        self, *, provider: str | None, model: str | None, input_tokens: float = 0,
        output_tokens: float = 0, cached_input_tokens: float = 0,
        reasoning_output_tokens: float = 0, agent: str | None = None,
        context: Context | None = None,
    ) -> None:  # fmt: skip
        exemplar = self._exemplar(context)
        labels = self._llm_labels(_TOKENS, provider, model)
        agent_label = self._bound(_TOKENS, "agent", agent or current_agent(context) or NO_AGENT)
        for token_type, count in (("input", input_tokens), ("output", output_tokens)):
            if count:
                values = (*labels, agent_label, token_type)
                self._inc(self._tokens, _TOKENS, values, count, exemplar)
        price = self.prices.price(model)
        if price is not None and (input_tokens or output_tokens):
            usd = price.cost(input_tokens, output_tokens, cached_input_tokens,
                             reasoning_output_tokens)  # fmt: skip
            self._inc(self._cost, _COST, (*labels, agent_label), usd, exemplar)

    def record_tool_call(
        self, *, tool: str, duration_s: float, error_type: str | None = None,
        agent: str | None = None, context: Context | None = None,
    ) -> None:  # fmt: skip
        tool_label = self._bound(_TOOL_CALLS, "tool", _text(tool, UNKNOWN))
        agent_label = self._bound(_TOOL_CALLS, "agent", agent or current_agent(context) or NO_AGENT)
        exemplar = self._exemplar(context)
        self._inc(self._tool_calls, _TOOL_CALLS, (self.service, agent_label, tool_label), 1,
                  exemplar)  # fmt: skip
        self._metrics.observe(self._tool_duration, (self.service, tool_label), duration_s,
                               exemplar)  # fmt: skip
        if error_type is not None:
            error = self._bound(_TOOL_ERRORS, "error_type", error_type)
            values = (self.service, agent_label, tool_label, error)
            self._metrics.child(self._tool_errors, values).inc()

    def record_agent_run(
        self, *, agent: str | None, duration_s: float, error_type: str | None = None,
        context: Context | None = None,
    ) -> None:  # fmt: skip
        agent_label = self._bound(_AGENT_DURATION, "agent", _text(agent, UNKNOWN))
        values = (self.service, agent_label)
        self._metrics.observe(self._agent_duration, values, duration_s, self._exemplar(context))
        if error_type is not None:
            error = self._bound(_AGENT_ERRORS, "error_type", error_type)
            self._metrics.child(self._agent_errors, (*values, error)).inc()

    # -- the OpenTelemetry metrics util-genai records ------------------------------------

    def record_otel(
        self, instrument: str, amount: float, attributes: Mapping[str, Any],
        context: Context | None,
    ) -> None:  # fmt: skip
        """One measurement of an official GenAI instrumentation, as Prometheus series."""
        provider = attributes.get(gc.PROVIDER_NAME)
        # The requested model: what the caller chose and what a price is set for; the
        # response's dated variant only when the request named none.
        model = attributes.get(gc.REQUEST_MODEL) or attributes.get(gc.RESPONSE_MODEL)
        error = attributes.get(gc.ERROR_TYPE)
        error_type = str(error) if error else None
        if instrument == gc.CLIENT_OPERATION_DURATION:
            self.record_llm_call(
                provider=_text(provider, UNKNOWN), model=_text(model, UNKNOWN),
                operation=_text(attributes.get(gc.OPERATION_NAME), UNKNOWN),
                duration_s=amount, error_type=error_type, context=context,
            )  # fmt: skip
        elif instrument == gc.CLIENT_TOKEN_USAGE:
            token_type = attributes.get(gc.TOKEN_TYPE)
            if token_type not in ("input", "output"):
                return
            self.record_tokens(
                provider=_text(provider, UNKNOWN), model=_text(model, UNKNOWN),
                input_tokens=amount if token_type == "input" else 0,
                output_tokens=amount if token_type == "output" else 0,
                agent=_text(attributes.get(gc.AGENT_NAME), "") or None, context=context,
            )  # fmt: skip
        elif instrument == gc.EXECUTE_TOOL_DURATION:
            self.record_tool_call(
                tool=_text(attributes.get(gc.TOOL_NAME), UNKNOWN), duration_s=amount,
                error_type=error_type, agent=_text(attributes.get(gc.AGENT_NAME), "") or None,
                context=context,
            )  # fmt: skip
        elif instrument == gc.INVOKE_AGENT_DURATION:
            self.record_agent_run(
                agent=_text(attributes.get(gc.AGENT_NAME), UNKNOWN), duration_s=amount,
                error_type=error_type, context=context,
            )  # fmt: skip


# -- the OTel metrics API, backed by the series above ------------------------------------


class _Histogram(NoOpHistogram):
    def __init__(self, name: str, sink: GenAIMetrics, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._instrument = name
        self._sink = sink

    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        # A metric must never break the LLM call being measured.
        with contextlib.suppress(Exception):
            self._sink.record_otel(self._instrument, amount, attributes or {}, context)


class _Meter(NoOpMeter):
    def __init__(self, name: str, sink: GenAIMetrics, version: str | None = None) -> None:
        super().__init__(name, version=version)
        self._sink = sink

    def create_histogram(
        self, name: str, unit: str = "", description: str = "", *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> _Histogram:  # fmt: skip
        return _Histogram(name, self._sink, unit=unit, description=description)


class GenAIMeterProvider(NoOpMeterProvider):
    """An OTel ``MeterProvider`` for the GenAI instrumentations only: their histograms land in
    :class:`GenAIMetrics`; any other instrument they might create is a no-op."""

    def __init__(self, sink: GenAIMetrics) -> None:
        self._sink = sink

    def get_meter(
        self, name: str, version: str | None = None, schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Meter:  # fmt: skip
        return _Meter(name, self._sink, version=version)
