"""What ``setup_telemetry`` wires for GenAI: the series and price table, the meter provider
the official instrumentations record into, and message-content capture.

The instrumentations themselves (OpenAI, Anthropic) are set up lazily in
``telemetry.instrumentation`` like every other library: skipped when the client is not
installed, one warning naming the ``genai`` extra when the client is but its
instrumentation is not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telemetry.genai.prices import PriceTable

if TYPE_CHECKING:
    from telemetry.genai.metrics import GenAIMetrics
    from telemetry.metrics import TelemetryMetrics
    from telemetry.settings import TelemetrySettings

__all__ = ["CAPTURE_VARIABLE", "GenAISetup", "setup_genai"]

#: opentelemetry-util-genai reads its content-capture mode from this variable when an
#: instrumentation is set up (``no_content``, ``span_only``, ``event_only``, ``span_and_event``).
CAPTURE_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

#: The instrumented clients (the rows of telemetry.instrumentation's table).
GENAI_LIBRARIES = ("openai", "anthropic")


@dataclass
class GenAISetup:
    metrics: GenAIMetrics | None
    capture_content: str
    instrument_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @contextmanager
    def capture_mode(self) -> Iterator[None]:
        """The content-capture mode in util-genai's variable while the instrumentations are
        set up (each handler reads it once, then), restored after: the settings field is the
        one place that decides, and the process environment is left as it was."""
        previous = os.environ.get(CAPTURE_VARIABLE)
        os.environ[CAPTURE_VARIABLE] = self.capture_content
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(CAPTURE_VARIABLE, None)
            else:
                os.environ[CAPTURE_VARIABLE] = previous

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()


def setup_genai(settings: TelemetrySettings, metrics: TelemetryMetrics | None) -> GenAISetup:
    """The GenAI series (when metrics are on) and the options for the instrumentations."""
    genai_metrics = None
    options: dict[str, dict[str, Any]] = {}
    if metrics is not None:
        from telemetry.genai.metrics import GenAIMeterProvider, GenAIMetrics

        genai_metrics = GenAIMetrics(metrics, PriceTable(_prices(settings.genai_prices)))
        genai_metrics.activate()
        provider = GenAIMeterProvider(genai_metrics)
        options = {library: {"meter_provider": provider} for library in GENAI_LIBRARIES}
    return GenAISetup(genai_metrics, settings.genai_capture_content, options)


def _prices(prices: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return prices or {}
