"""The scrubbing memo and the cheap pre-checks: the same answers as a fresh scrub, bounded.

A remembered result must never differ from what scrubbing the value again would give, for
secret-bearing and clean text alike; the pre-checks rewritten for speed must accept exactly
what the forms they replace accepted.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.scrubbing import FILTERED, RouteSecretsMiddleware, ScrubbingPolicy, shapes
from telemetry.scrubbing.patterns import DIGITS, SHAPE_LITERALS, SHORT_TEXT, has_shape_literal
from telemetry.scrubbing.policy import MEMO_MAX_ENTRIES, MEMO_MAX_LENGTH
from tests.scrubbing.corpus import (
    CLEAN_TEXT,
    DATABASE_ERRORS,
    FREE_TEXT_PROSE,
    FREE_TEXT_SECRETS,
    LUHN_VALID_CARDS,
    SECRET,
    SECRETS_IN_TEXT,
    SQL_STATEMENTS,
    URL_PATH_SECRETS,
)

SPAN_VALUES = [
    "http",
    "GET",
    "1.1",
    "127.0.0.1:8000",
    "/json",
    "http://127.0.0.1:8000/json",
    "wrk/4.1.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "SELECT items.id, items.name FROM items WHERE items.id = ?",
    "sqlite",
    "AnyIO worker thread",
    "/tmp/tmpp958jb93/bench.sqlite3",
]
CORPUS = [
    *(text for text, _ in SECRETS_IN_TEXT),
    *CLEAN_TEXT,
    *(f"card {number}." for number in LUHN_VALID_CARDS),
    *(statement for statement, _ in SQL_STATEMENTS),
    *DATABASE_ERRORS,
    *FREE_TEXT_SECRETS,
    *FREE_TEXT_PROSE,
    *(text for text, _ in URL_PATH_SECRETS),
    *SPAN_VALUES,
    f"https://h/reset-password/{SECRET}",
    "",
    "x" * (MEMO_MAX_LENGTH + 1) + " password=hunter2",  # too long to be remembered
]
POLICY = ScrubbingPolicy()
# The keys a span stores them under, and some that change the answer (SQL, sensitive, tail).
KEYS = ["http.url", "db.statement", "password", "exception.stacktrace", "exception.message"]


def fresh(policy: ScrubbingPolicy, text: str, *, truncate: bool = True, tail: bool = False) -> str:
    """The scrub itself, never answered from the memo."""
    return policy._scrub_text(text, truncate, tail, ())


def fresh_attribute(key: str, text: str) -> Any:
    """One attribute scrubbed by a policy that has remembered nothing yet."""
    return ScrubbingPolicy()._scrub_attribute(key, text, (), ())


def copy_of(text: str) -> str:
    """An equal string that is another object (a span's value is rebuilt per request)."""
    return "".join(list(text))


@pytest.mark.parametrize("text", CORPUS)
def test_remembered_text_is_what_a_fresh_scrub_gives(text: str) -> None:
    policy = ScrubbingPolicy()
    expected = fresh(policy, text)
    first = policy.scrub_text(text)
    again = policy.scrub_text(copy_of(text))  # answered from the memo when short enough
    assert first == again == expected
    assert (first is text) == (expected is text)
    for truncate, tail in ((False, False), (True, True)):
        assert policy.scrub_text(text, truncate=truncate, tail=tail) == fresh(
            policy, text, truncate=truncate, tail=tail
        )


def test_clean_text_comes_back_as_the_object_given() -> None:
    policy = ScrubbingPolicy()
    for text in [*CLEAN_TEXT, *SPAN_VALUES]:
        assert policy.scrub_text(text) is text
        other = copy_of(text)
        assert policy.scrub_text(other) is other  # a hit, not the remembered object


@pytest.mark.parametrize("key", KEYS)
def test_remembered_attributes_are_what_a_fresh_scrub_gives(key: str) -> None:
    policy = ScrubbingPolicy()
    for text in CORPUS:
        expected = fresh_attribute(key, text)
        first = policy.scrub_attributes({key: text, "n": 1})
        again = policy.scrub_attributes({key: copy_of(text), "n": 1})
        assert first == again
        assert first == (None if expected == text else {key: expected, "n": 1})


def test_secrets_of_the_span_or_request_bypass_the_memo() -> None:
    policy = ScrubbingPolicy()
    url = f"/reset-password/{SECRET}?next=/home"
    # Remembered as clean outside any request...
    assert policy.scrub_text(url) is url
    assert policy.scrub_attributes({"http.target": url}) is None
    # ...but a span's route secret or the current request's are still replaced.
    assert policy.scrub_attributes({"http.target": url}, secrets=(SECRET,)) == {
        "http.target": f"/reset-password/{FILTERED}?next=/home"
    }
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["path_params"] = {"token": SECRET}
        seen["text"] = policy.scrub_text(url)
        seen["attributes"] = policy.scrub_attributes({"http.target": url})

    asyncio.run(RouteSecretsMiddleware(app)({"type": "http", "path": url}, None, None))
    assert seen["text"] == f"/reset-password/{FILTERED}?next=/home"
    assert seen["attributes"] == {"http.target": seen["text"]}
    # Nothing of the request stays behind.
    assert policy.scrub_text(url) is url
    assert policy.scrub_attributes({"http.target": url}) is None


def test_memo_stays_bounded() -> None:
    policy = ScrubbingPolicy()
    for i in range(MEMO_MAX_ENTRIES * 2 + 7):
        policy.scrub_text(f"/items/{i}?q=x")
        policy.scrub_attributes({"http.url": f"/items/{i}?token=t{i}"})
        assert len(policy._memo) <= MEMO_MAX_ENTRIES
    assert policy.scrub_attributes({"http.url": "/items/1?token=t1"}) == {
        "http.url": "/items/1?token=[Filtered]"
    }
    policy.scrub_text("y" * (MEMO_MAX_LENGTH + 1))
    assert "y" * (MEMO_MAX_LENGTH + 1) not in policy._memo


def test_memo_stays_bounded_and_right_under_threads() -> None:
    policy = ScrubbingPolicy()
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(MEMO_MAX_ENTRIES):
            n = (i * 7 + offset) % (MEMO_MAX_ENTRIES + 500)
            text = f"GET /a/{n}?password=p{n}" if n % 2 else f"GET /a/{n}"
            expected = f"GET /a/{n}?password={FILTERED}" if n % 2 else text
            if policy.scrub_text(text) != expected:
                errors.append(text)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(policy._memo) <= MEMO_MAX_ENTRIES + len(threads)  # a clear races a store at most


def test_memo_is_not_part_of_the_policys_identity() -> None:
    used, unused = ScrubbingPolicy(), ScrubbingPolicy()
    used.scrub_text("http://h/a?token=x")
    assert used == unused and hash(used) == hash(unused)
    assert repr(used) == repr(unused) and "_memo" not in repr(used)


def test_each_policy_remembers_its_own_answers() -> None:
    base = ScrubbingPolicy()
    assert base.scrub_text("tenant_ref=t9") == "tenant_ref=t9"
    extended = base.extend(names=["tenant_ref"])
    assert extended.scrub_text("tenant_ref=t9") == f"tenant_ref={FILTERED}"
    short = ScrubbingPolicy(max_length=100)
    text = "a" * 150
    short.scrub_text("b" * 90)
    assert "b" * 90 in short._memo  # under max_length: remembered
    assert short.scrub_text(text).endswith("[truncated, 150 chars]")  # over it: never
    assert text not in short._memo


# -- the pre-checks --------------------------------------------------------------------

ORIGINAL_DIGITS = re.compile(r"\d(?:[ -]?\d){7}")
ORIGINAL_SHAPE_RX = re.compile(
    "|".join(map(re.escape, SHAPE_LITERALS)) + "|" + ORIGINAL_DIGITS.pattern
)


def original_may_hold_secret(policy: ScrubbingPolicy, text: str) -> bool:
    """``ScrubbingPolicy._may_hold_secret`` before the pre-checks were made cheaper."""
    low = text.lower()
    if len(text) <= SHORT_TEXT:
        if ORIGINAL_SHAPE_RX.search(low) is not None:
            return True
        if "=" not in text and ":" not in text:
            return False
        return policy._cores_rx.search(low.replace("-", "").replace("_", "")) is not None
    if any(lit in low for lit in SHAPE_LITERALS) or ORIGINAL_DIGITS.search(text):
        return True
    if "=" not in text and ":" not in text:
        return False
    flat = low.replace("-", "").replace("_", "")
    return any(core in flat for core in policy._cores)


PRECHECK_CORPUS = [
    *CORPUS,
    *SHAPE_LITERALS,
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # fullwidth digits are \d as well
    "1 2 3 4-5-6 7 8",
    "1234 567",
    "12--345678",
]


@pytest.mark.parametrize("text", PRECHECK_CORPUS)
def test_prechecks_accept_what_the_tuples_and_the_regex_did(text: str) -> None:
    low = text.lower()
    assert has_shape_literal(low) == any(lit in low for lit in SHAPE_LITERALS)
    assert (DIGITS.search(text) is None) == (ORIGINAL_DIGITS.search(text) is None)
    assert shapes._has_db_error_hint(text) == any(h in text for h in shapes._DB_ERROR_HINTS)
    assert shapes._has_word(low) == any(word in low for word in shapes._WORDS)
    assert shapes._has_path_hint(low) == any(hint in low for hint in shapes._PATH_HINTS)
    for long in (text, text * (SHORT_TEXT // max(len(text), 1) + 1)):
        assert POLICY._may_hold_secret(long) == original_may_hold_secret(POLICY, long)


def test_every_literal_is_in_the_chains() -> None:
    for literal in SHAPE_LITERALS:
        assert has_shape_literal(f"x{literal}x")
    for hint in shapes._DB_ERROR_HINTS:
        assert shapes._has_db_error_hint(f"x{hint}x")
    for word in shapes._WORDS:
        assert shapes._has_word(f"x{word}x")
    for hint in shapes._PATH_HINTS:
        assert shapes._has_path_hint(f"x{hint}x")


SECRETISH = st.sampled_from(
    [
        *SHAPE_LITERALS,
        *shapes._WORDS,
        *shapes._PATH_HINTS,
        *shapes._DB_ERROR_HINTS,
        "password=",
        "token: ",
        "Bearer ",
        "4111 1111 1111 1111",
        "://u:p@",
        "\n",
        "'",
    ]
)
TEXT = st.lists(st.text(alphabet="aZ09 -_:=/@.'é", max_size=6) | SECRETISH, max_size=12).map(
    "".join
)


@given(TEXT, st.integers(min_value=1, max_value=40))
@settings(max_examples=300, deadline=None)
def test_prechecks_match_as_before(text: str, repeat: int) -> None:
    low = text.lower()
    assert has_shape_literal(low) == any(lit in low for lit in SHAPE_LITERALS)
    assert (DIGITS.search(low) is None) == (ORIGINAL_DIGITS.search(text) is None)
    long = text * repeat  # past SHORT_TEXT too
    assert POLICY._may_hold_secret(long) == original_may_hold_secret(POLICY, long)


@given(TEXT, st.sampled_from(KEYS))
@settings(max_examples=300, deadline=None)
def test_memo_answers_as_a_fresh_scrub(text: str, key: str) -> None:
    expected = fresh(POLICY, text)
    assert POLICY.scrub_text(text) == expected
    assert POLICY.scrub_text(copy_of(text)) == expected
    attribute = fresh_attribute(key, text)
    out = POLICY.scrub_attributes({key: copy_of(text)})
    assert out == (None if attribute == text else {key: attribute})
