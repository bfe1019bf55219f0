"""One scrubbing policy, declared once, applied to every sink.

A secret kept out of Sentry but shipped to Jaeger is still a leak, so the same
:class:`ScrubbingPolicy` scrubs Sentry events and their breadcrumbs (``before_send``,
``before_send_transaction``), span attributes on the export path
(:class:`ScrubbingSpanExporter`), log records (``telemetry.logs``) and metric labels.

Two mechanisms, both derived from the same list of sensitive names:

* by name: a mapping key (header, JSON field, frame local, span attribute) whose
  normalised name is sensitive has its value replaced by ``[Filtered]``;
* by value: free text (URLs, query strings, SQL, exception messages) is searched with one
  pre-compiled regex for ``key=value`` / ``key: value`` pairs whose key is sensitive,
  ``Authorization``/``Cookie`` header lines, bearer/basic credentials, JWTs, well-known
  API key formats, credentials in URLs and Luhn-valid card numbers.

The replacement never keeps any part of the secret. Trace ids, span ids, route templates
and status codes are never touched, so the trace stays joinable across sinks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from telemetry.scrubbing.messages import fit_message_attribute
from telemetry.scrubbing.patterns import (
    CLIENT_IP_ATTRIBUTES,
    DEFAULT_FRAGMENTS,
    DEFAULT_MAX_LENGTH,
    DEFAULT_NAMES,
    DEFAULT_SUFFIXES,
    DIGITS,
    FILTERED,
    LABEL_MAX_LENGTH,
    LINE,
    LINE_VALUED,
    MAX_DEPTH,
    PII_NAMES,
    PLACEHOLDER,
    PRESERVED_KEYS,
    SAFE_SCALARS,
    SCAN,
    SCAN_SLACK,
    SERVER_PEER_ATTRIBUTES,
    SHORT_TEXT,
    TAIL_KEYS,
    VALUE,
    WHOLE_ONLY,
    has_shape_literal,
    normalise_name,
    shape_replacement,
)
from telemetry.scrubbing.request import (
    current_route_secrets,
    redact_text,
    redact_values,
    template_secrets,
)
from telemetry.scrubbing.shapes import (
    SQL_KEYS,
    scrub_db_error,
    scrub_free_text,
    scrub_sql,
    scrub_url_paths,
)

__all__ = ["ScrubbingPolicy", "Wrapper"]

#: A container type another library wraps values in (sentry-sdk's ``AnnotatedValue``): its
#: inner value is scrubbed and the wrapper kept. ``(type, unwrap, rewrap)``.
Wrapper = tuple[type, Callable[[Any], Any], Callable[[Any, Any], Any]]

# Results remembered for repeated values. Span attributes (URLs, hosts, user agents, SQL
# statements, methods) repeat on nearly every request, and scrubbing one costs microseconds
# even when it is clean, on every span. Values up to MEMO_MAX_LENGTH characters are
# remembered, at most MEMO_MAX_ENTRIES of them: the memo is emptied when full, as values
# (URLs, headers) may be attacker-chosen. Its worst case is a few MB (keys and results are
# shared strings); the hot values are back after one more scrub each.
MEMO_MAX_LENGTH = 1024
MEMO_MAX_ENTRIES = 4096
# The end user's address on a server span, where the peer is the client.
_SERVER_CLIENT_IP = CLIENT_IP_ATTRIBUTES | SERVER_PEER_ATTRIBUTES


@dataclasses.dataclass(frozen=True)
class ScrubbingPolicy:
    """What counts as sensitive, and how long a string may be before it is truncated.

    ``names`` match whole (normalised) names; ``fragments`` match anywhere inside a
    name; ``suffixes`` match its end; ``patterns`` are extra regexes whose every match
    is replaced. ``keep_user_email``: the Sentry ``user.email`` is scrubbed by default
    because ``send_default_pii`` is off; set it to send the address the app sets.
    ``keep_client_ip``: the end user's IP (``client.address``, ``net.peer.ip`` of server
    spans, ``X-Forwarded-For`` and friends, the ASGI ``client``) is dropped unless set.
    ``wrappers``: wrapper types whose inner value is scrubbed in place (see :data:`Wrapper`).
    """

    names: frozenset[str] = DEFAULT_NAMES
    fragments: frozenset[str] = DEFAULT_FRAGMENTS
    suffixes: frozenset[str] = DEFAULT_SUFFIXES
    patterns: tuple[str, ...] = ()
    max_length: int = DEFAULT_MAX_LENGTH
    keep_user_email: bool = False
    keep_client_ip: bool = False
    wrappers: tuple[Wrapper, ...] = ()
    _cores: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _cores_rx: re.Pattern[str] = dataclasses.field(init=False, repr=False, compare=False)
    _extra: tuple[re.Pattern[str], ...] = dataclasses.field(init=False, repr=False, compare=False)
    _cache: dict[str, bool] = dataclasses.field(init=False, repr=False, compare=False, hash=False)
    # text -> scrub_text's result, (key, value) -> scrub_attributes' new value (MEMO_MAX_*)
    _memo: dict[str | tuple[str, str], Any] = dataclasses.field(
        init=False, repr=False, compare=False, hash=False
    )
    _memo_longest: int = dataclasses.field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.max_length < 64:
            raise ValueError(f"max_length must be at least 64, got {self.max_length}")
        norm = {
            f: frozenset(normalise_name(n) for n in getattr(self, f) if n)
            for f in ("names", "fragments", "suffixes")
        }
        pii = frozenset(normalise_name(n) for n in PII_NAMES)
        norm["names"] = norm["names"] - pii if self.keep_client_ip else norm["names"] | pii
        extra = []
        for pattern in self.patterns:
            try:
                extra.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"invalid scrub pattern {pattern!r}: {exc}") from exc
        for field, value in norm.items():
            object.__setattr__(self, field, value)
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "_extra", tuple(extra))
        every = norm["names"] | norm["fragments"] | norm["suffixes"]
        # a name containing another core is implied by it ("accesstoken" by "token")
        object.__setattr__(
            self,
            "_cores",
            tuple(sorted(c for c in every if not any(o != c and o in c for o in every))),
        )
        cores_rx = "|".join(map(re.escape, self._cores)) or "(?!)"  # (?!) never matches
        object.__setattr__(self, "_cores_rx", re.compile(cores_rx))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_memo", {})
        # No longer than max_length either: a remembered text is never truncated, so its
        # result is the same whatever ``truncate``/``tail`` say.
        object.__setattr__(self, "_memo_longest", min(MEMO_MAX_LENGTH, self.max_length))

    @classmethod
    def default(cls) -> ScrubbingPolicy:
        return _default_policy()

    @classmethod
    def from_lists(
        cls,
        fields: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        replace_defaults: bool = False,
        max_length: int = DEFAULT_MAX_LENGTH,
        keep_user_email: bool = False,
        keep_client_ip: bool = False,
    ) -> ScrubbingPolicy:
        """Build from plain lists (``TELEMETRY_SCRUB_FIELDS`` / ``_PATTERNS``).

        The fields add to the defaults unless ``replace_defaults`` is set, in which case
        they are the only sensitive names (fragments and suffixes are dropped too).
        """
        fields = [f.strip() for f in fields if f.strip()]
        if replace_defaults:
            return cls(
                names=frozenset(fields),
                fragments=frozenset(),
                suffixes=frozenset(),
                patterns=tuple(patterns),
                max_length=max_length,
                keep_user_email=keep_user_email,
                keep_client_ip=keep_client_ip,
            )
        return dataclasses.replace(
            cls.default(),
            max_length=max_length,
            keep_user_email=keep_user_email,
            keep_client_ip=keep_client_ip,
        ).extend(names=fields, patterns=patterns)

    def extend(
        self, names: Iterable[str] = (), patterns: Iterable[str] = (), fragments: Iterable[str] = ()
    ) -> ScrubbingPolicy:
        return dataclasses.replace(
            self,
            names=self.names | frozenset(names),
            fragments=self.fragments | frozenset(fragments),
            patterns=self.patterns + tuple(p for p in patterns if p),
        )

    # -- names and text -------------------------------------------------------------

    def is_sensitive_name(self, name: str) -> bool:
        hit = self._cache.get(name)
        if hit is None:
            norm = normalise_name(name)
            last = norm.rsplit(".", 1)[-1]
            hit = (
                norm in self.names
                or (last in self.names and last not in WHOLE_ONLY)
                or any(f in norm for f in self.fragments)
                or norm.endswith(tuple(self.suffixes))
                # bind parameters are opt-in in OTel and may hold any user data
                or (norm.startswith("db.") and ".parameter" in norm)
            )
            if len(self._cache) > 4096:  # keys can be attacker-chosen: stay bounded
                self._cache.clear()
            self._cache[name] = hit
        return hit

    def scrub_text(self, text: str, *, truncate: bool = True, tail: bool = False) -> str:
        """Replace secrets in free text; strings over ``max_length`` are truncated."""
        return self._text(text, truncate, tail, current_route_secrets(self.is_sensitive_name))

    def _text(self, text: str, truncate: bool, tail: bool, route_secrets: tuple[str, ...]) -> str:
        """:meth:`scrub_text` with the request's route secrets given, remembered when the
        result depends on nothing but ``text``: no route secrets, a short plain ``str``
        (a subclass may compare or hash differently)."""
        if route_secrets or type(text) is not str or len(text) > self._memo_longest:
            return self._scrub_text(text, truncate, tail, route_secrets)
        out = self._memo.get(text)
        if out is None:
            out = self._scrub_text(text, truncate, tail, route_secrets)
            self._remember(text, out)
        # an equal text is answered with itself, as a fresh scrub returns clean text
        return text if out == text else out

    def _remember(self, key: str | tuple[str, str], result: Any) -> None:
        memo = self._memo
        if len(memo) >= MEMO_MAX_ENTRIES:
            memo.clear()  # atomic under the GIL, as is the store: no lock on the hot path
        memo[key] = result

    def _scrub_text(
        self, text: str, truncate: bool, tail: bool, route_secrets: tuple[str, ...]
    ) -> str:
        """The scrubbing itself, never remembered."""
        limit = self.max_length
        too_long = truncate and len(text) > limit
        work = text
        if too_long:
            work = text[-(limit + SCAN_SLACK) :] if tail else text[: limit + SCAN_SLACK]
        out = self._scan(work) if self._may_hold_secret(work) else work
        # By shape, where no name is next to the value: database error text, words like
        # "invalid token <x>", URL paths of bot/webhook APIs, and the current request's
        # sensitive route parameters (``/reset-password/{token}``).
        out = scrub_url_paths(scrub_free_text(scrub_db_error(out)))
        if route_secrets:
            out = redact_text(out, route_secrets)
        for pattern in self._extra:
            out = pattern.sub(FILTERED, out)
        if too_long:
            marker = f"[truncated, {len(text)} chars]"
            out = f"{marker}...{out[-limit:]}" if tail else f"{out[:limit]}...{marker}"
        return text if out == text else out

    def _may_hold_secret(self, text: str) -> bool:
        low = text.lower()  # keeps every digit, space and dash where it was
        if has_shape_literal(low) or DIGITS.search(low) is not None:
            return True
        if "=" not in text and ":" not in text:
            return False
        flat = low.replace("-", "").replace("_", "")
        if len(text) <= SHORT_TEXT:
            return self._cores_rx.search(flat) is not None
        return any(core in flat for core in self._cores)

    def _scan(self, text: str) -> str:
        parts: list[str] = []
        pos = 0
        while (m := SCAN.search(text, pos)) is not None:
            end = m.end()
            if m.lastgroup != "key":
                parts += (text[pos : m.start()], shape_replacement(m))
            elif not self.is_sensitive_name(m.group("name")):
                parts.append(text[pos:end])
            else:
                parts.append(text[pos:end])
                end = self._replace_value(text, m, parts)
            pos = end
        if not parts:
            return text
        parts.append(text[pos:])
        return "".join(parts)

    def _replace_value(self, text: str, key: re.Match[str], parts: list[str]) -> int:
        """Append the filtered value that follows a sensitive key; return where it ends."""
        start = key.end()
        if key.group("sep") == ":" and normalise_name(key.group("name")) in LINE_VALUED:
            line = LINE.match(text, start)
            if line is not None:
                parts.append(FILTERED)
                return line.end()
        value = VALUE.match(text, start)
        if value is None:
            return start
        raw = value.group("uv") if value.group("uv") is not None else value.group("qv")
        if (
            not raw
            or PLACEHOLDER.fullmatch(raw)  # empty, or a SQL bind parameter
            or (len(raw) <= 4 and normalise_name(key.group("name")) in WHOLE_ONLY)
        ):  # "status code: 500" is a status, not an OAuth code
            parts.append(value.group(0))
        elif value.group("uv") is not None:
            parts.append(FILTERED)
        else:
            parts.append(value.group("vq") + FILTERED + text[value.end("qv") : value.end()])
        return value.end()

    def scrub_label_value(self, value: str) -> str:
        """Metric label value: scrubbed and kept short (labels are indexed)."""
        out = self.scrub_text(value)
        return out if len(out) <= LABEL_MAX_LENGTH else out[:LABEL_MAX_LENGTH] + "..."

    # -- JSON-like values -----------------------------------------------------------

    def scrub_value(self, value: Any, _depth: int = 0) -> Any:
        """Scrub any JSON-like value; returns the same object when nothing changed."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if value is None or isinstance(value, SAFE_SCALARS):
            return value
        if _depth >= MAX_DEPTH:
            return FILTERED  # also ends reference cycles in hand-built input
        if isinstance(value, Mapping):
            return self._scrub_mapping(value, _depth)
        if isinstance(value, (list, tuple)):
            if (
                len(value) == 2
                and isinstance(value[0], str)
                and value[1] not in (None, "")
                and self.is_sensitive_name(value[0])
            ):  # [name, value] pair
                pair = [value[0], self._filter(value[1])]
                return pair if isinstance(value, list) else tuple(pair)
            return self._scrub_items(value, _depth)
        for wrapper_type, unwrap, rewrap in self.wrappers:
            if isinstance(value, wrapper_type):
                inner = unwrap(value)
                new = self.scrub_value(inner, _depth + 1)
                return value if new is inner else rewrap(value, new)
        if isinstance(value, (bytes, bytearray)):
            decoded = bytes(value).decode("utf-8", "replace")
            out = self.scrub_text(decoded)
            return value if out == decoded else out
        if isinstance(value, (set, frozenset)):
            return self._scrub_items(list(value), _depth)
        try:  # an object the serializer would repr later: check that text
            text = str(value)
        except Exception:
            return FILTERED
        out = self.scrub_text(text)
        return value if out == text else out

    def _scrub_items(self, items: list[Any] | tuple[Any, ...], depth: int) -> Any:
        out = [self.scrub_value(v, depth + 1) for v in items]
        for i, item in enumerate(items[:-1]):
            # argv style ["--password", "hunter2"]: the flag names the next item
            if (
                isinstance(item, str)
                and item.startswith("-")
                and len(item) < 64
                and self.is_sensitive_name(item.lstrip("-"))
            ):
                out[i + 1] = self._filter(items[i + 1])
        if all(a is b for a, b in zip(out, items, strict=True)):
            return items
        return tuple(out) if isinstance(items, tuple) else out

    def _scrub_mapping(self, mapping: Mapping[Any, Any], depth: int) -> Any:
        out: dict[Any, Any] = {}
        changed = False
        for key, value in mapping.items():
            name = key if isinstance(key, str) else str(key)
            if name in PRESERVED_KEYS:
                new = value
            elif fitted := fit_message_attribute(name, value, self.max_length, self.scrub_value):
                new = fitted  # span data of envelope mode: the same JSON as the OTLP attribute
            elif self.is_sensitive_name(name) or (
                not self.keep_client_ip and _is_client_address(name, value)
            ):
                new = self._filter(value)
            else:
                new = self.scrub_value(value, depth + 1)
            changed = changed or new is not value
            out[key] = new
        return out if changed else mapping

    def _filter(self, value: Any) -> Any:
        """Value under a sensitive name: gone entirely, keeping the container shape."""
        if value is None or value == "" or isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            return {k: self._filter(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self._filter(v) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        return FILTERED

    # -- span attributes ----------------------------------------------------------------

    def client_ip_attributes(self, *, server_span: bool) -> frozenset[str]:
        """Attributes holding the end user's address, to drop (none when IPs are kept).

        On a server span the network peer is the client (or its proxy); on a client span
        it is the server called, which is no personal data."""
        if self.keep_client_ip:
            return frozenset()
        return _SERVER_CLIENT_IP if server_span else CLIENT_IP_ATTRIBUTES

    def route_secrets(self, attributes: Mapping[str, Any] | None) -> tuple[str, ...]:
        """Values of sensitive route parameters, from a span's ``http.route`` and URLs."""
        route = (attributes or {}).get("http.route")
        if not isinstance(route, str) or "{" not in route:
            return ()
        urls = [
            v
            for k in ("url.path", "http.target", "url.full", "http.url")
            if isinstance(v := (attributes or {}).get(k), str)
        ]
        return template_secrets(route, urls, self.is_sensitive_name)

    def redact(self, value: Any, secrets: tuple[str, ...]) -> Any:
        """``value`` with the given secret values replaced in every string."""
        return redact_values(value, secrets)

    def scrub_attributes(
        self,
        attributes: Mapping[str, Any] | None,
        *,
        drop: frozenset[str] = frozenset(),
        secrets: tuple[str, ...] = (),
    ) -> dict[str, Any] | None:
        """Scrubbed copy of OTel attributes, or None when nothing needed to change.

        ``drop``: attribute names removed (the client's address); ``secrets``: values
        replaced wherever they occur (sensitive route parameters)."""
        if not attributes:
            return None
        changed: dict[str, Any] | None = None
        route_secrets = current_route_secrets(self.is_sensitive_name)
        # A string's new value depends on nothing but its key and itself unless secret
        # values are to be replaced: then it is remembered (spans repeat their attributes).
        memo = None if secrets or route_secrets else self._memo
        longest = self._memo_longest
        for key, value in attributes.items():
            if key in PRESERVED_KEYS:
                continue
            if key in drop:
                if changed is None:
                    changed = dict(attributes)
                del changed[key]
                continue
            new: Any
            if (
                memo is not None
                and type(value) is str
                and type(key) is str
                and len(value) <= longest
            ):
                new = memo.get((key, value))
                if new is None:
                    new = self._scrub_attribute(key, value, (), ())
                    self._remember((key, value), new)
            else:
                new = self._scrub_attribute(key, value, secrets, route_secrets)
            if new is not value and new != value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = new
        return changed

    def _scrub_attribute(
        self, key: str, value: Any, secrets: tuple[str, ...], route_secrets: tuple[str, ...]
    ) -> Any:
        """One attribute's scrubbed value (``value`` itself when nothing is to change)."""
        # GenAI message JSON: scrubbed and shortened by whole messages, never cut mid-JSON.
        fitted = fit_message_attribute(key, value, self.max_length, self.scrub_value)
        if fitted is not None:
            return fitted
        if isinstance(value, str):
            if value and self.is_sensitive_name(key):
                return FILTERED
            text = scrub_sql(value) if key in SQL_KEYS else value
            if secrets:
                text = redact_text(text, secrets)
            return self._text(text, True, key in TAIL_KEYS, route_secrets)
        if isinstance(value, Sequence) and value and isinstance(value[0], str):
            if self.is_sensitive_name(key):
                return tuple(FILTERED for _ in value)
            scrubbed = [
                self._text(redact_text(v, secrets), True, False, route_secrets)
                if isinstance(v, str)
                else v
                for v in value
            ]
            return value if scrubbed == list(value) else tuple(scrubbed)
        return value  # numbers and booleans carry no secrets


_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:.]+", re.IGNORECASE)


def _is_client_address(name: str, value: Any) -> bool:
    """An ASGI ``client`` / ``client_addr``: ``("203.0.113.7", 51234)`` or ``"ip:port"``."""
    if name not in ("client", "client_addr", "peer", "remote"):
        return False
    host = value[0] if isinstance(value, (list, tuple)) and len(value) == 2 else value
    if not isinstance(host, str):
        return False
    host = host.strip("'\"")  # serialized frame locals hold repr() of strings
    address = host.rsplit(":", 1)[0] if "." in host else host  # the "ip:port" form
    return _IP.fullmatch(address) is not None


@lru_cache(maxsize=1)
def _default_policy() -> ScrubbingPolicy:
    return ScrubbingPolicy()
