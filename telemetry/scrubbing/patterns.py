"""The patterns behind the scrubbing policy: what a secret looks like in free text.

One pre-compiled scanner finds sensitive ``key=value`` pairs and secrets recognised by
their shape (bearer/basic credentials, JWTs, well-known API key formats, credentials in
URLs, Luhn-valid card numbers); cheap pre-checks let clean text skip the scan.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import re
import uuid

FILTERED = "[Filtered]"
DEFAULT_MAX_LENGTH = 8 * 1024
LABEL_MAX_LENGTH = 256
# Text beyond the kept part that is still scanned, so a secret straddling the cut is
# recognised whole and replaced instead of leaving its first characters behind.
SCAN_SLACK = 1024
MAX_DEPTH = 48


def _words(*lines: str) -> frozenset[str]:
    return frozenset(word for line in lines for word in line.split())


# Headers, then body/local/query fields. Starts from sentry-sdk's DEFAULT_DENYLIST and
# OpenTelemetry's URL/header sanitization lists, widened with names that are credentials by
# any reading (signed URLs, webhook signatures, OAuth codes, one-time passwords).
DEFAULT_NAMES = _words(
    "authorization proxy-authorization authentication cookie set-cookie x-api-key",
    "x-auth-token x-csrf-token x-xsrf-token x-csrftoken xsrf-token _xsrf _csrf _csrf_token",
    "password passwd pwd mysql_pwd passphrase api_key apikey api-key x_api_key secret",
    "client_secret client_key token access_token refresh_token id_token id_token_hint",
    "private_key auth credentials credential session sessionid session_id phpsessid",
    "_session user_session aiohttp_session connect.sid symfony csrf csrftoken csrf_token xsrf",
    "cookies dsn jwt signature sig code otp totp mfa_code signing_key hmac_key",
    "recovery_codes recovery_code backup_codes card_number cardnumber credit_card cvv cvc",
)
# The end user's address (sentry-sdk's DEFAULT_PII_DENYLIST and the usual proxy headers):
# sensitive unless the policy keeps client IPs (``send_default_pii``'s meaning).
PII_NAMES = _words(
    "x-forwarded-for x-real-ip forwarded x-client-ip x-cluster-client-ip cf-connecting-ip",
    "true-client-ip fastly-client-ip x-original-forwarded-for remote_addr ip_address client_ip",
)
# Span attributes that hold the end user's address: dropped unless client IPs are kept.
# On a server span the peer is the client; on a client span it is the called server.
CLIENT_IP_ATTRIBUTES = frozenset({"client.address", "http.client_ip", "http.client.ip"})
SERVER_PEER_ATTRIBUTES = frozenset(
    {"net.peer.ip", "net.sock.peer.addr", "network.peer.address", "client.socket.address"}
)
# Names matched only as the whole name, never as the last part of a dotted attribute
# (``error.code``, ``rpc.code`` are not credentials), and whose very short values
# (``code: 500``) are status numbers, not secrets.
WHOLE_ONLY = frozenset({"code", "sig"})
# Any name containing one of these is sensitive (``db_password``, ``stripe_api_key``,
# ``X-Hub-Signature-256``, ``X-Amz-Credential``, ``X-Access-Key``).
DEFAULT_FRAGMENTS = _words(
    "password passwd secret apikey privatekey accesstoken refreshtoken authtoken sessiontoken",
    "signature credential accesskey signingkey hmackey clientkey recoverycode idtoken",
)
# Any name ending with one of these is sensitive (``github_token``), but not
# ``max_tokens`` / ``input_tokens``, which an LLM platform records everywhere.
DEFAULT_SUFFIXES = frozenset({"token", "cookie", "sessionid", "dsn"})

# Keys whose values are never scrubbed nor truncated: they join the sinks together.
PRESERVED_KEYS = _words(
    "trace_id span_id parent_span_id traceId spanId parentSpanId event_id http.route",
    "http.status_code http.response.status_code status_code otel.status_code",
)
# Attribute values where the end matters most (the innermost frame, the message).
TAIL_KEYS = frozenset({"exception.stacktrace"})
SAFE_SCALARS: tuple[type, ...] = (bool, int, float, _dt.date, _dt.time, _dt.timedelta)
SAFE_SCALARS += (decimal.Decimal, uuid.UUID, enum.Enum)
PLACEHOLDER = re.compile(r"\?|%s|%\(\w+\)s|\$\d+|:\w+|\{\w*\}")


def normalise_name(name: str) -> str:
    """``X-API-Key`` / ``x_api_key`` / ``ApiKey`` all become ``xapikey``-style keys."""
    return name.lower().replace("-", "").replace("_", "")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Cheap pre-checks, so that clean text (most span attributes, SQL, URLs) skips the scan:
# a key needs a separator and a sensitive name inside the text; a secret recognised by
# its shape needs one of these literals or a run of 8 digits. No regex alternation here:
# Python's ``re`` has no literal-prefix search for one, so it is tried at every position
# (4 µs on a 26-character URL), where ``in`` per literal is a fast substring search.
SHAPE_LITERALS = tuple(
    sorted(_words("@ bearer basic eyj sk- _live_ _test_ akia xox glpat ghp_ gho_ ghu_ ghs_ ghr_"))
)


def has_shape_literal(low: str) -> bool:
    """``any(lit in low for lit in SHAPE_LITERALS)`` spelled out: a chain of ``in`` costs
    a third of the generator (a test keeps the two the same)."""
    return (
        "@" in low
        or "_live_" in low
        or "_test_" in low
        or "akia" in low
        or "basic" in low
        or "bearer" in low
        or "eyj" in low
        or "gho_" in low
        or "ghp_" in low
        or "ghr_" in low
        or "ghs_" in low
        or "ghu_" in low
        or "glpat" in low
        or "sk-" in low
        or "xox" in low
    )


# 8 digits, each pair at most one space or dash apart: ``\d(?:[ -]?\d){7}`` unrolled, the
# same strings, but without the group repeat ``re`` runs slowly at every digit.
DIGITS = re.compile(r"\d" + r"[ -]?\d" * 7)
# Up to this length the sensitive-name cores are searched with one regex alternation (35
# ``in`` searches cost more on short text); beyond it ``in`` per core is cheaper.
SHORT_TEXT = 256
# One scanner, linear in the text: a `key=` / `key:` / `"key": ` candidate (its value is
# not consumed, so a URL inside a harmless value is still scanned), or a secret by shape.
SCAN = re.compile(
    r"(?P<key>(?<![\w.-])(?:--?)?(?P<kq>\\?[\"']?)(?P<name>[a-z_][\w.-]{0,79})(?P=kq)"
    r"\s*(?P<sep>=|:(?!//))[ \t]*)"
    r"|(?P<url>\b[a-z][a-z0-9+.\-]*://)[^\s/@?#\"'<>]+@"
    r"|(?P<bearer>(?<![\w-])bearer[ \t]+)[\w\-.~+/]+=*"
    r"|(?P<basic>(?<![\w-])basic[ \t]+)[a-z0-9+/]{8,}=*"
    r"|(?P<jwt>\beyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*)"
    r"|(?P<known>\b(?:sk|pk|rk)_(?:live|test)_[0-9a-z]{10,}|\bgh[pousr]_[0-9a-z]{30,}"
    r"|\bakia[0-9a-z]{16}\b|\bsk-[\w-]{20,}|\bxox[baprs]-[\w-]{10,}|\bglpat-[\w-]{20,})"
    r"|(?P<card>(?<![\w.\-])(?:\d[ -]?){12,18}\d(?![\w\-]))",
    re.IGNORECASE,
)
# The value after a sensitive key: quoted (to the closing quote, escapes honoured) or
# a bare token, with an optional auth scheme ("token: Bearer abc").
VALUE = re.compile(
    r"(?P<vq>\\?[\"'])(?P<qv>(?:\\.|.)*?)(?:(?P=vq)|(?=[\r\n])|\Z)"
    r"|(?P<uv>%\(\w+\)s|(?:(?:bearer|basic|digest|negotiate|token)[ \t]+)?"
    r"[^\s&;,\"'<>(){}\[\]\\]+)",
    re.IGNORECASE,
)
# Header lines: the rest of the line is the credential (a Cookie line holds many pairs).
LINE_VALUED = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})
LINE = re.compile(r"(?![\"'\s])[^\r\n]+")


def shape_replacement(m: re.Match[str]) -> str:
    """Replacement for a secret recognised by its shape (not by a key)."""
    kind, text = m.lastgroup, m.group(0)
    if kind == "basic":
        token = text[len(m.group("basic")) :]
        # base64 credentials, not prose like "Basic authentication failed"
        if not (
            re.search(r"[0-9+/=]", token)
            or (len(token) % 4 == 0 and token.lower() != token != token.upper())
        ):
            return text
    if kind in ("url", "bearer", "basic"):
        return m.group(kind) + FILTERED + ("@" if kind == "url" else "")
    if kind == "card":
        digits = re.sub(r"\D", "", text)
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits):
            return FILTERED
        return text
    return FILTERED  # jwt, well-known API key formats
