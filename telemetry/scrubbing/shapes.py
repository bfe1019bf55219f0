"""Secrets recognised by where they sit rather than by a name next to them.

* SQL literals: a statement keeps its shape and loses its values (``VALUES ('x', 1234)``
  becomes ``VALUES (?, ?)``), as OpenTelemetry's database conventions ask of
  ``db.query.text``; bind placeholders, identifiers, comments (sqlcommenter's trace
  context) and short numbers (``LIMIT 10``, ``SELECT 1``) are kept.
* Database error text: PostgreSQL's ``DETAIL: Key (col)=(value)`` and ``Failing row
  contains (...)``, MySQL's ``Duplicate entry '...'``, SQLAlchemy's ``[parameters: ...]``
  and the literals of its ``[SQL: ...]``: the values are user data whatever the column.
* Free text after a sensitive word: ``invalid token abc123def`` (a value that looks
  generated: it holds a digit or is long; ``invalid token provided`` is prose).
* Secrets in URL paths of well-known APIs: Telegram bot tokens (``/bot<id>:<token>/``),
  Slack and Discord webhook paths, generic ``/webhook(s)/<secret>``.

Pure functions over ``str``; the policy decides where each applies.
"""

from __future__ import annotations

import re

__all__ = [
    "SQL_KEYS",
    "scrub_db_error",
    "scrub_free_text",
    "scrub_sql",
    "scrub_url_paths",
]

FILTERED = "[Filtered]"
SQL_PLACEHOLDER = "?"
#: Span attributes holding a statement (old and current semantic conventions).
SQL_KEYS = frozenset({"db.statement", "db.query.text"})

_SQL = re.compile(
    r"(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))"
    r"|(?P<ident>\"(?:[^\"]|\"\")*\"|`[^`]*`)"
    r"|(?P<dollar>\$(?P<tag>[a-z_]\w*)?\$.*?(?:\$(?P=tag)\$|\Z))"
    r"|(?P<string>(?<![\w'])(?:[ebnxu]&?)?'(?:[^'\\]|\\.|'')*(?:'|\Z))"
    r"|(?P<number>(?<![\w$:.%?@])(?:0x[0-9a-f]+|\d{4,}(?:\.\d*)?(?:e[-+]?\d+)?|\d+\.\d{3,})(?!\w))",
    re.IGNORECASE | re.DOTALL,
)
_SQL_HINT = re.compile(r"'|\$\w*\$|\d{4}|0x|\.\d{3}", re.IGNORECASE)


def _sql_repl(m: re.Match[str]) -> str:
    return m.group(0) if m.lastgroup in ("comment", "ident") else SQL_PLACEHOLDER


def scrub_sql(statement: str) -> str:
    """The statement with its literal values replaced by ``?``."""
    if _SQL_HINT.search(statement) is None:
        return statement
    out = _SQL.sub(_sql_repl, statement)
    return statement if out == statement else out


# -- database error text ------------------------------------------------------------------

_DB_ERROR = re.compile(
    # PostgreSQL unique/foreign key detail: the column list stays, the values go. The
    # value may hold ")": end at the known continuation, else at the line's last ")".
    r"(?P<key>\bKey \([^\n]*?\)=\()(?:[^\n]*?(?=\)\s+(?:already exists|is not present|"
    r"is still referenced|conflicts with))|[^\n]*(?=\)))"
    r"|(?P<row>\bFailing row contains \()[^\n]*(?=\))"
    r"|(?P<dup>\bDuplicate entry ')(?:[^'\\\n]|\\.|'')*(?=' for key)"
    r"|(?P<params>\[parameters: )[^\n]*(?=\])",
)
_SQLALCHEMY_SQL = re.compile(r"\[SQL: (?P<sql>.*?)\](?=\n|\Z|\s*\[parameters)", re.DOTALL)
_DB_ERROR_HINTS = (")=(", "Failing row", "Duplicate entry", "[parameters: ")

# The pre-checks below run on every clean string (each span attribute): they are chains of
# ``in`` rather than ``any()`` over the hint tuples, which costs three times as much in
# generator frames. A test keeps each chain equal to its tuple.


def _has_db_error_hint(text: str) -> bool:
    return (
        ")=(" in text
        or "Failing row" in text
        or "Duplicate entry" in text
        or "[parameters: " in text
    )


def scrub_db_error(text: str) -> str:
    """Database error text with the values of rows and parameters removed."""
    out = text
    if _has_db_error_hint(out):
        out = _DB_ERROR.sub(lambda m: m.group(m.lastgroup or 0) + FILTERED, out)
    if "[SQL: " in out:
        out = _SQLALCHEMY_SQL.sub(lambda m: f"[SQL: {scrub_sql(m.group('sql'))}]", out)
    return text if out == text else out


# -- free text after a sensitive word ------------------------------------------------------

_WORDS = ("token", "password", "passwd", "secret", "apikey", "api key", "api-key", "api_key", "otp")
_FREE = re.compile(
    r"(?P<lead>\b(?:token|password|passwd|secret|api[ _-]?key|otp)\b[ \t]+['\"]?)"
    r"(?P<value>[\w\-.~+/=]{6,})",
    re.IGNORECASE,
)


def _free_repl(m: re.Match[str]) -> str:
    value = m.group("value")
    generated = any(c.isdigit() for c in value) or len(value) >= 16
    if not generated or value.startswith("[") or value == FILTERED.strip("[]"):
        return m.group(0)
    return m.group("lead") + FILTERED


def _has_word(low: str) -> bool:
    return (
        "token" in low
        or "password" in low
        or "passwd" in low
        or "secret" in low
        or "apikey" in low
        or "api key" in low
        or "api-key" in low
        or "api_key" in low
        or "otp" in low
    )


def scrub_free_text(text: str) -> str:
    """``invalid token abc123def`` → ``invalid token [Filtered]``."""
    if not _has_word(text.lower()):
        return text
    out = _FREE.sub(_free_repl, text)
    return text if out == text else out


# -- secrets in URL paths ------------------------------------------------------------------

_PATHS = re.compile(
    r"(?P<bot>/bot)\d{3,}:[\w-]{20,}"
    r"|(?P<slack>\bhooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]+"
    r"|(?P<discord>/api/webhooks/\d+/)[\w-]{20,}"
    r"|(?P<hook>/webhooks?/)(?=[\w-]*\d)[\w-]{16,}",
    re.IGNORECASE,
)
_PATH_HINTS = ("/bot", "hooks.slack.com", "/webhook")


def _has_path_hint(low: str) -> bool:
    return "/bot" in low or "hooks.slack.com" in low or "/webhook" in low


def scrub_url_paths(text: str) -> str:
    """Bot tokens and webhook secrets in URL paths replaced (the host and verb stay)."""
    if not _has_path_hint(text.lower()):
        return text
    out = _PATHS.sub(lambda m: m.group(m.lastgroup or 0) + FILTERED, text)
    return text if out == text else out
