"""Trace exemplars: which trace a metric sample points at, and how exemplars survive
multiprocess mode (prometheus-client drops them there; the shared store keeps them)."""

from __future__ import annotations

from time import time
from typing import Any

from opentelemetry.trace import get_current_span
from prometheus_client.samples import Exemplar

from telemetry.metrics.multiprocess import ExemplarStore, bucket_bound, sample_key
from telemetry.metrics.prometheus_internals import label_names, metric_name, upper_bounds
from telemetry.shared import KEEP_ATTRIBUTE

__all__ = ["SharedExemplars", "current_exemplar", "kept_exemplar"]


def current_exemplar() -> dict[str, str] | None:
    """``{trace_id, span_id}`` of the current span, only when it is valid and sampled: an
    exemplar of an unsampled span would point at a trace that was never stored."""
    context = get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


def kept_exemplar(status_code: str) -> dict[str, str] | None:
    """The exemplar of a request whose trace a tail sampler is sure to keep: a server error
    (its span has error status), or a span marked ``telemetry.keep`` (critical routes)."""
    exemplar = current_exemplar()
    if exemplar is None or status_code.startswith("5"):
        return exemplar
    attributes = getattr(get_current_span(), "attributes", None) or {}
    return exemplar if attributes.get(KEEP_ATTRIBUTE) else None


class SharedExemplars:
    """Multiprocess mode: each recorded exemplar also goes to the store shared by workers,
    keyed like the sample prometheus-client would have put it on."""

    def __init__(self, store: ExemplarStore) -> None:
        self.store = store

    def counted(
        self,
        counter: Any,
        sample: str,
        values: tuple[str, ...],
        exemplar: dict[str, str],
        amount: float = 1.0,
    ) -> None:
        labels = dict(zip(label_names(counter), values, strict=True))
        self.store.record(sample_key(sample, labels), Exemplar(exemplar, amount, time()))

    def observed(
        self, histogram: Any, values: tuple[str, ...], exemplar: dict[str, str], value: float
    ) -> None:
        labels = dict(zip(label_names(histogram), values, strict=True))
        labels["le"] = bucket_bound(upper_bounds(histogram), value)
        key = sample_key(f"{metric_name(histogram)}_bucket", labels)
        self.store.record(key, Exemplar(exemplar, value, time()))

    def close(self) -> None:
        self.store.close()
