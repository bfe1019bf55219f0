"""Rows for the spans inside a Sentry transaction, matched by what each span does.

sentry-sdk's spans are recognised by their op; the bridge's (OTel spans, in envelope
transactions or read from OTLP) by their attributes, so a missing op is a row, not a miss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.integration.fidelity.app import (
    CUSTOM_DESCRIPTION,
    CUSTOM_OP,
    SENTRY,
    TRANSACTION_CHILD_DESCRIPTION,
)
from tests.integration.fidelity.fields import (
    SPAN_SKIP,
    Comparator,
    compared_cell,
    flatten,
    presence_cell,
    same,
)
from tests.integration.fidelity.model import ABSENT, PRESENT, Cell, Report, Row


def start_of(document: dict[str, Any]) -> str:
    return str(document.get("start_timestamp") or document.get("timestamp") or "")


Span = dict[str, Any]
Roles = Callable[[list[Span], bool], dict[str, Span | None]]


def _data(span: Span, *names: str) -> Any:
    data = span.get("data") or {}
    return next((data[n] for n in names if n in data), None)


def _command(span: Span) -> str:
    """The command or statement verb (``GET``, ``SELECT``), from whichever field has it."""
    op = str(span.get("op") or "")
    if op in ("cache.get", "cache.put"):
        return "GET" if op == "cache.get" else "SET"
    for text in (
        _data(span, "db.operation.name", "db.operation", "redis.command"),
        (span.get("tags") or {}).get("redis.command"),
        _data(span, "db.query.text", "db.statement"),
        span.get("description"),
    ):
        if isinstance(text, str) and text.split():
            return text.split()[0].upper()
    return ""


def _nth(spans: list[Span], n: int) -> Span | None:
    return spans[n] if len(spans) > n else None


def _first(spans: list[Span], test: Callable[[Span], bool]) -> Span | None:
    return next((s for s in spans if test(s)), None)


def _is_sql(span: Span) -> bool:
    return _data(span, "db.system", "db.system.name") == "postgresql" and _command(span) == "SELECT"


def roles_request(spans: list[Span], native: bool) -> dict[str, Span | None]:
    """Each span the request's transaction should hold, by what it does. sentry-sdk makes
    two spans per cached Redis command (``cache.*`` around ``db.redis``); OTel makes one,
    which then has to carry what both carry (unless the bridge makes two as well)."""
    if native:
        commands = [s for s in spans if s.get("op") == "db.redis"]
        puts = [s for s in spans if s.get("op") == "cache.put"]
        lookups = [s for s in spans if s.get("op") == "cache.get"]
    else:
        redis = [
            s for s in spans
            if _data(s, "db.system", "db.system.name") == "redis"
            or str(s.get("op") or "").startswith("cache.")
        ]  # fmt: skip
        caches = [s for s in redis if str(s.get("op") or "").startswith("cache.")]
        commands = [s for s in redis if s not in caches] or caches
        puts = [s for s in caches if s.get("op") == "cache.put"] or [
            s for s in commands if _command(s) == "SET"
        ]
        lookups = [s for s in caches if s.get("op") == "cache.get"] or [
            s for s in commands if _command(s) == "GET"
        ]
    sets = [s for s in commands if _command(s) == "SET"]
    gets = [s for s in commands if _command(s) == "GET"]
    return {
        "SQL query (`db`)": _first(spans, _is_sql),
        "Redis `SET` (`db.redis`)": _nth(sets, 0),
        "Redis `GET` hit (`db.redis`)": _nth(gets, 0),
        "Redis `GET` miss (`db.redis`)": _nth(gets, 1),
        "cache write (`cache.put`)": _nth(puts, 0),
        "cache hit (`cache.get`)": _nth(lookups, 0),
        "cache miss (`cache.get`)": _nth(lookups, 1),
        "outgoing HTTP (`http.client`)": _first(
            spans, lambda s: _data(s, "http.method", "http.request.method") is not None
        ),
        f"custom span (`{CUSTOM_OP}`)": _first(
            spans, lambda s: s.get("description") == CUSTOM_DESCRIPTION
        ),
        "span `function` (asyncio task)": _first(spans, lambda s: s.get("op") == "function"),
    }


def roles_standalone(spans: list[Span], native: bool) -> dict[str, Span | None]:
    return {
        "SQL query (`db`)": _first(spans, _is_sql),
        "custom span inside it": _first(
            spans, lambda s: s.get("description") == TRANSACTION_CHILD_DESCRIPTION
        ),
    }


def _same_http_description(reference: Any, value: Any) -> bool:
    """``METHOD URL``: Relay derives it without the port (and without an IP host), so only
    the method and the path are compared."""

    def method_and_path(text: Any) -> tuple[str, str]:
        method, _, url = str(text).partition(" ")
        return method, urlsplit(url).path

    return method_and_path(reference) == method_and_path(value)


def _description_matches(role: str) -> Comparator:
    return _same_http_description if "(`http.client`)" in role else same


def _op_matches(role: str) -> Comparator:
    if "(`db.redis`)" in role:
        # One OTel span per cached command: a cache op stands for the db.redis one too.
        return lambda ref, value: same(ref, value) or str(value).startswith("cache.")
    return same


def span_rows(
    report: Report, section: str, picked: dict[str, dict[str, Any] | None], roles: Roles
) -> None:
    by_config = {
        c: roles(sorted((t or {}).get("spans") or [], key=start_of), c == SENTRY)
        for c, t in picked.items()
    }
    for role, reference in by_config[SENTRY].items():
        if reference is None:
            continue
        spans = {c: found[role] for c, found in by_config.items()}
        report.add(Row(section, role, "span sent", {
            c: Cell(PRESENT if s is not None else ABSENT) for c, s in spans.items()
        }, reference=(SENTRY,)))  # fmt: skip
        flat = {c: flatten(s, SPAN_SKIP) if s is not None else {} for c, s in spans.items()}
        for path in sorted(flat[SENTRY]):
            if path in ("origin",):
                continue
            equal = {
                "op": _op_matches(role),
                "description": _description_matches(role),
                "status": same,
            }.get(path)
            cells: dict[str, Cell] = {}
            for config in spans:
                ref = None if config == SENTRY else flat[SENTRY].get(path)
                values = flat[config].get(path)
                cells[config] = (
                    compared_cell(values, ref, equal) if equal and ref
                    else presence_cell(values, ref)
                )  # fmt: skip
            report.add(Row(section, role, f"`{path}`", cells, reference=(SENTRY,)))
