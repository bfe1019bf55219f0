"""Field paths of Sentry-shaped documents, and cells built from them.

A document (event, transaction, span) is flattened into ``path -> values``: nested mappings
join with dots, lists of mappings merge under ``[]`` (``exception.values[].type``), other
lists and a few known containers are leaves. What is volatile by nature is left out, so the
generated table does not change from one run to the next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from tests.integration.fidelity.model import (
    ABSENT,
    FILTER_MARK,
    FILTERED,
    LEAK,
    PRESENT,
    WRONG,
    Cell,
)
from tests.integration.fidelity.run import SECRETS

#: Top-level keys that identify one event rather than describe it.
EVENT_SKIP = frozenset(
    {"_meta", "event_id", "timestamp", "start_timestamp", "spans", "breadcrumbs", "type",
     "measurements"}
)  # fmt: skip
SPAN_SKIP = frozenset(
    {"trace_id", "span_id", "parent_span_id", "segment_id", "start_timestamp", "timestamp",
     "same_process_as_parent", "exclusive_time", "hash"}
)  # fmt: skip
#: Containers compared by presence only (their content is per run or per machine).
LEAF_PATHS = frozenset(
    {
        "modules",
        "extra.sys.argv",
        "sdk.integrations",
        "sdk.packages",
        "exception.values[].stacktrace.frames[].vars",
        "exception.values[].stacktrace.frames[].pre_context",
        "exception.values[].stacktrace.frames[].post_context",
    }
)
#: sentry-sdk adds code.* (query and HTTP request source) only to spans slower than 100 ms:
#: present or not depending on the machine's speed, so never compared.
VOLATILE = re.compile(r"(^|\.)code\.")


def flatten(document: Any, skip: Iterable[str] = EVENT_SKIP) -> dict[str, list[Any]]:
    skipped = frozenset(skip)
    found: dict[str, list[Any]] = {}

    def walk(value: Any, path: str) -> None:
        if value is None or value == {} or value == []:
            return  # an empty string is kept: sentry-sdk sends one for a body it leaves out
        if path in LEAF_PATHS or not isinstance(value, dict | list):
            found.setdefault(path, []).append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not path and key in skipped:
                    continue
                walk(item, f"{path}.{key}" if path else str(key))
        elif all(isinstance(item, dict) for item in value):
            for item in value:
                walk(item, f"{path}[]")
        else:
            found.setdefault(path, []).append(value)

    walk(document, "")
    return {path: values for path, values in found.items() if not VOLATILE.search(path)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def is_filtered(values: Iterable[Any]) -> bool:
    return any(FILTER_MARK in _text(value) for value in values)


def stable(value: Any, limit: int = 60) -> str:
    """A value as table text without what changes between runs (ports, ids)."""
    text = _text(value)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "<trace-id>", text)
    text = re.sub(r"\b[0-9a-f]{16}\b", "<span-id>", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


Comparator = Callable[[Any, Any], bool]


def same(reference: Any, value: Any) -> bool:
    return stable(reference, 10_000) == stable(value, 10_000)


def presence_cell(values: list[Any] | None, reference: list[Any] | None) -> Cell:
    """Cell of a field whose presence counts; ``reference`` None for the reference itself.

    LEAK: the reference scrubbed this field and here one of the scenario's secrets is in
    clear (a value merely different from a scrubbed one is no leak)."""
    if not values:
        return Cell(ABSENT)
    if is_filtered(values):
        return Cell(FILTERED)
    if (
        reference
        and is_filtered(reference)
        and any(secret in _text(value) for value in values for secret in SECRETS)
    ):
        return Cell(LEAK)
    return Cell(PRESENT)


def compared_cell(
    values: list[Any] | None,
    reference: list[Any] | None,
    equal: Comparator = same,
) -> Cell:
    """Cell of a field whose value counts: it must equal the reference's (``equal``)."""
    cell = presence_cell(values, reference)
    if cell.state != PRESENT or not reference or not values:
        return cell
    if equal(reference[0], values[0]):
        return cell
    return Cell(WRONG, stable(values[0]))


def requirement_cell(met: bool, detail: str = "") -> Cell:
    return Cell(PRESENT if met else WRONG, "" if met else detail)


def find_text(document: Any, needles: Iterable[str]) -> str | None:
    """The flattened path where any of ``needles`` occurs in clear, or None."""
    wanted = tuple(needles)
    for path, values in flatten(document, skip=("_meta",)).items():
        if any(needle in _text(value) for value in values for needle in wanted):
            return path
    return None
