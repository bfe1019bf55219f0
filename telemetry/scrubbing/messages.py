"""Structure-aware shortening of the JSON the GenAI conventions put in span attributes
(``gen_ai.input.messages``, ``gen_ai.output.messages``, ...).

Cutting such a string at N characters leaves invalid JSON that neither Jaeger nor Sentry's AI
views can show. Here the JSON is parsed, scrubbed value by value (so a secret inside a
message is found by key as well as by shape), and shortened by dropping whole messages; only
a single message that alone exceeds the limit has its longest strings cut. The result always
parses. A leaf (standard library only, nothing of the package): the scrubbing policy calls
it with its own scrub function, and scrubbing must not depend on the GenAI facade.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

#: JSON-valued GenAI attributes (present only when message content capture is on) and which
#: end of a list to keep when it must be shortened: the newest input messages (the turn
#: being answered), the first output choices.
MESSAGE_ATTRIBUTES: dict[str, str] = {
    "gen_ai.input.messages": "last",
    "gen_ai.output.messages": "first",
    "gen_ai.system_instructions": "first",
    "gen_ai.tool.definitions": "first",
    "gen_ai.tool.call.arguments": "first",
    "gen_ai.tool.call.result": "first",
}

__all__ = ["fit_json", "fit_message_attribute"]

_MIN_KEPT_CHARS = 32
_MARKER = re.compile(r"\.\.\.\[truncated, (\d+) chars\]$")
_MAX_ROUNDS = 64


def _dump(value: Any) -> str:
    # Compact and unescaped, like the instrumentations write it: the limit is spent on content.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fit_message_attribute(
    key: str, value: object, limit: int, scrub: Callable[[Any], Any]
) -> str | None:
    """The scrubbed, size-bounded JSON of a GenAI message attribute; None when ``key`` is not
    one of them or ``value`` is not JSON text (the caller scrubs it as plain text then)."""
    keep = MESSAGE_ATTRIBUTES.get(key)
    if keep is None or not isinstance(value, str):
        return None
    return fit_json(value, limit, scrub, keep_last=keep == "last")


def fit_json(
    text: str, limit: int, scrub: Callable[[Any], Any], *, keep_last: bool = False
) -> str | None:
    """``text`` scrubbed and at most ``limit`` characters, still valid JSON; None if ``text``
    is not JSON. Returns ``text`` itself when nothing had to change."""
    try:
        original = json.loads(text)
    except ValueError:
        return None
    value = scrub(original)
    if value is original and len(text) <= limit:
        return text
    out = _dump(value)
    if len(out) <= limit:
        return out
    if isinstance(value, list) and value:
        value = _drop_items(value, limit, keep_last)
        out = _dump(value)
        if len(out) <= limit:
            return out
    value = _shrink_strings(value, limit)
    out = _dump(value)
    if len(out) <= limit:
        return out
    # A structure too large even with short strings (thousands of tiny parts): an empty
    # container is still valid JSON of the same shape, where a byte cut would not be.
    return "[]" if isinstance(value, list) else "{}"


def _drop_items(items: list[Any], limit: int, keep_last: bool) -> list[Any]:
    """Whole items dropped from the far end until the rest fits; at least one is kept."""
    ordered = list(reversed(items)) if keep_last else list(items)
    kept: list[Any] = []
    size = 2  # the brackets
    for item in ordered:
        item_size = len(_dump(item)) + (1 if kept else 0)
        if kept and size + item_size > limit:
            break
        kept.append(item)
        size += item_size
    return list(reversed(kept)) if keep_last else kept


def _shrink_strings(value: Any, limit: int) -> Any:
    """Cut the longest string leaves (each keeps its start and a marker of its length)."""
    for _ in range(_MAX_ROUNDS):
        excess = len(_dump(value)) - limit
        if excess <= 0:
            return value
        path, longest = _longest_string(value, ())
        if path is None or len(longest) <= _MIN_KEPT_CHARS:
            return value
        # A string the scrubber already cut keeps the length of the original in its marker.
        earlier = _MARKER.search(longest)
        body = longest[: earlier.start()] if earlier else longest
        marker = f"...[truncated, {earlier.group(1) if earlier else len(longest)} chars]"
        keep = max(_MIN_KEPT_CHARS, len(longest) - excess - len(marker))
        value = _replace(value, path, body[:keep] + marker)
    return value


def _longest_string(value: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None, str]:
    best: tuple[tuple[Any, ...] | None, str] = (None, "")
    if isinstance(value, str):
        return path, value
    children = (
        value.items() if isinstance(value, dict)
        else enumerate(value) if isinstance(value, list)
        else ()
    )  # fmt: skip
    for key, child in children:
        found = _longest_string(child, (*path, key))
        if found[0] is not None and len(found[1]) > len(best[1]):
            best = found
    return best


def _replace(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy
