"""Every reach into prometheus-client's private attributes, in one place.

prometheus-client has no public accessor for these; if a release renames one,
``tests/metrics/test_prometheus_internals.py`` fails here instead of exemplars silently
going missing in multiprocess mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import values

__all__ = ["label_names", "metric_name", "multiprocess_values", "upper_bounds"]


def label_names(metric: Any) -> tuple[str, ...]:
    """The label names a metric was declared with."""
    return tuple(metric._labelnames)


def metric_name(metric: Any) -> str:
    """A metric's name as declared, without the ``_total`` a counter's sample gets."""
    return str(metric._name)


def upper_bounds(histogram: Any) -> Sequence[float]:
    """A histogram's bucket bounds, ``+Inf`` last."""
    return list(histogram._upper_bounds)


def multiprocess_values() -> bool:
    """Whether prometheus-client picked its multiprocess value class (at its first import)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))
