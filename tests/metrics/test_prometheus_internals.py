"""prometheus-client's private attributes the metrics rely on: fails loudly when a release
renames one (multiprocess exemplars would otherwise go missing without an error)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from telemetry.metrics import prometheus_internals as internals


def test_label_names_and_metric_name() -> None:
    counter = Counter("jobs", "Jobs.", ["queue", "state"], registry=CollectorRegistry())
    assert internals.label_names(counter) == ("queue", "state")
    assert internals.metric_name(counter) == "jobs"


def test_histogram_upper_bounds_end_with_inf() -> None:
    histogram = Histogram("latency", "L.", buckets=(0.1, 1.0), registry=CollectorRegistry())
    assert list(internals.upper_bounds(histogram)) == [0.1, 1.0, float("inf")]


def test_multiprocess_value_class_is_detectable() -> None:
    # Single-process here: the flag must exist and be false, not silently missing.
    from prometheus_client import values

    assert hasattr(values.MultiProcessValue(), "_multiprocess")
    assert internals.multiprocess_values() is False
