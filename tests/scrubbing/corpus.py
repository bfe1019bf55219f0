"""Text the scrubbing tests share: secret-bearing strings with what they become, and strings
that must come back unchanged (the memo's tests check every one of them both ways)."""

from __future__ import annotations

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
ROUTE = "/api/v1/agents/{agent_id}"
SECRET = "Zq9SecretValue77"

#: (text, scrubbed)
SECRETS_IN_TEXT = [
    ("GET /x?token=abc123&x=1", "GET /x?token=[Filtered]&x=1"),
    ("login failed: password=hunter2", "login failed: password=[Filtered]"),
    (
        "UPDATE users SET password = 'hunter2' WHERE id = 1",
        "UPDATE users SET password = '[Filtered]' WHERE id = 1",
    ),
    ("Authorization: Bearer abc.def-ghi", "Authorization: [Filtered]"),
    ("Cookie: sid=s1; csrftoken=c2\nnext", "Cookie: [Filtered]\nnext"),
    ("postgresql+psycopg://app:s3cret@db:5432/x", "postgresql+psycopg://[Filtered]@db:5432/x"),
    ("{'password': 'hunter2', 'user': 'bob'}", "{'password': '[Filtered]', 'user': 'bob'}"),
    ('{"client_secret": "s3", "a": 1}', '{"client_secret": "[Filtered]", "a": 1}'),
    ("run --api-key=k1 --verbose", "run --api-key=[Filtered] --verbose"),
    ("next=/login?access_token=t1", "next=/login?access_token=[Filtered]"),
    ("token: Bearer abc", "token: [Filtered]"),
    ("pay with 4111-1111-1111-1111 now", "pay with [Filtered] now"),
    ("Basic dXNlcjpwYXNz", "Basic [Filtered]"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "jwt [Filtered]"),
    ("key sk-ant-api03-abcdefghijklmnopqrstu", "key [Filtered]"),
]

CLEAN_TEXT = [
    "GET",
    ROUTE,
    "max_tokens=100 input_tokens=5",
    "Error: connection refused at 12:30",
    "SELECT * FROM users WHERE api_key = %s AND password = %(pw)s AND token = $1",
    f"trace {TRACE_ID} span {SPAN_ID}",
    "Basic authentication failed",
    "order 4111111111111112 (fails Luhn)",
    "https://example.com/a?page=2&sort=name",
]

LUHN_VALID_CARDS = [
    "4111111111111111",
    "5500 0000 0000 0004",
    "3400-000000-00009",
    "6011000990139424",
]

#: (statement, without its literals or None when unchanged)
SQL_STATEMENTS = [
    (
        f"INSERT INTO users (email, reset_token) VALUES ('a@b.c', '{SECRET}')",
        "INSERT INTO users (email, reset_token) VALUES (?, ?)",
    ),
    ("SELECT * FROM t WHERE pin = 123456 LIMIT 10", "SELECT * FROM t WHERE pin = ? LIMIT 10"),
    ("SELECT 'it''s', E'a\\'b' FROM t", "SELECT ?, ? FROM t"),
    ("SELECT $tag$ secret $tag$, $$x$$", "SELECT ?, ?"),
    ("SELECT 1 WHERE id = %(id)s AND x = $1 AND y = :name", None),
    ('SELECT "col""x", `b` FROM "t1" WHERE t1.c2 = ?', None),
    (
        "/*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/ SELECT 1",
        None,
    ),
    ("SELECT x FROM t WHERE y = 'unterminated", "SELECT x FROM t WHERE y = ?"),
    ("SELECT 0xDEADBEEF, 3.14159", "SELECT ?, ?"),
]

DATABASE_ERRORS = [
    'duplicate key value violates unique constraint "u"\n'
    f"DETAIL:  Key (reset_token)=({SECRET}) already exists.",
    f'DETAIL:  Key (a, b)=(1, {SECRET} (x)) is not present in table "t".',
    f"DETAIL:  Failing row contains (1, {SECRET}, null).",
    f"(1062, \"Duplicate entry '{SECRET}' for key 'users.reset_token'\")",
    f"[SQL: INSERT INTO t (x) VALUES ('{SECRET}')]\n[parameters: ('{SECRET}', 1)]",
]

FREE_TEXT_SECRETS = [
    f"invalid token {SECRET}",
    f"Invalid token '{SECRET}' for user 3",
    "password Hunter2024 rejected",
    "OTP 493021 expired",
]

FREE_TEXT_PROSE = [
    "invalid token provided",
    "token expired",
    "password reset requested",
    "max tokens 4096",
]

#: (text, the secret in its URL path)
URL_PATH_SECRETS = [
    (
        "HTTP Request: POST https://api.telegram.org/bot123456789:AAE-abcdefghijklmnopqrstuvw"
        '/sendMessage "HTTP/1.1 200 OK"',
        "AAE-abcdefghijklmnopqrstuvw",
    ),
    ("https://hooks.slack.com/services/T0001/B0002/XXXXsecretXXXX1234", "XXXXsecretXXXX1234"),
    ("https://discord.com/api/webhooks/123456/abcdefghijklmnopqrstuvwxyz12", "abcdefghij"),
    ("https://h.example/webhook/9f86d081884c7d659a2feaa0c55ad015", "9f86d081884c"),
]
