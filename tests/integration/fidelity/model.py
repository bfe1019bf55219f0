"""Cells, rows and verdicts of the fidelity table, and the reviewed list of reasons.

A row compares one field (a span attribute, an event field, a breadcrumb, a session count)
across the four configurations. Its reference is the native tool for that sink (OpenTelemetry
alone for Jaeger, sentry-sdk alone for Sentry); the bridge, in both modes, must deliver at
least what the reference delivers. A *requirement* row instead states what every sink must
show (DESIGN.md, issue 11) whatever the native tool does.

Where the bridge delivers less, the row fails unless ``REASONS`` names why. That list is
deliberately small and explicit: each entry says where the reason is documented. Adding an
entry is a decision to review, not a way to make a row pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from tests.integration.fidelity.app import BRIDGE_ENVELOPE, BRIDGE_OTLP, CONFIGS, OTEL, SENTRY

BRIDGES = (BRIDGE_OTLP, BRIDGE_ENVELOPE)
COLUMN_TITLES = {
    OTEL: "OTel alone",
    SENTRY: "sentry-sdk alone",
    BRIDGE_OTLP: "bridge otlp",
    BRIDGE_ENVELOPE: "bridge envelope",
}
SHORT = {BRIDGE_OTLP: "otlp", BRIDGE_ENVELOPE: "envelope"}

PRESENT = "present"
ABSENT = "absent"
FILTERED = "filtered"  # the value arrived as [Filtered]
WRONG = "wrong"  # a value arrived, but not the reference's
LEAK = "leak"  # in clear where the reference sends [Filtered]
NA = "na"  # the configuration has no such sink

FILTER_MARK = "[Filtered]"
_SYMBOL = {
    PRESENT: "✓",
    ABSENT: "✗",
    FILTERED: "`[Filtered]`",
    WRONG: "✗",
    LEAK: "✓ in clear",
    NA: "n/a",
}
# A scrubbed value still says the field was there (and the policy says why); a different
# value (a sanitised statement, another source) carries less than a scrubbed one.
_RANK = {ABSENT: 0, WRONG: 1, FILTERED: 2, PRESENT: 3, LEAK: 3}


@dataclass(frozen=True)
class Cell:
    state: str
    detail: str = ""  # stable text only (no ids, ports or times): the table is committed

    def render(self) -> str:
        return f"{_SYMBOL[self.state]} {self.detail}".strip()


NA_CELL = Cell(NA)


@dataclass
class Row:
    section: str
    subject: str
    field: str
    cells: dict[str, Cell]
    #: Configurations whose cell the bridge must match (the best of them counts).
    reference: tuple[str, ...] = ()
    #: What every configuration must show; when set, the bridge must meet it (PRESENT).
    requirement: str = ""

    def cell(self, config: str) -> Cell:
        return self.cells.get(config, NA_CELL)

    @property
    def key(self) -> str:
        return f"{self.section} / {self.subject} / {self.field}"


@dataclass(frozen=True)
class Reason:
    """Why the bridge may deliver less than the native tool on the rows it matches."""

    text: str
    field: str  # fnmatch pattern on Row.field
    subject: str = "*"
    section: str = "*"
    #: Which shortfall it explains: ABSENT, FILTERED, WRONG, or "*".
    when: str = "*"
    modes: tuple[str, ...] = BRIDGES

    def explains(self, row: Row, config: str, shortfall: str) -> bool:
        return (
            config in self.modes
            and self.when in ("*", shortfall)
            and _matches(self.section, row.section)
            and _matches(self.subject, row.subject)
            and _matches(self.field, row.field)
        )


def _matches(pattern: str, text: str) -> bool:
    """``*`` is the only wildcard; backquotes (markdown) are ignored on both sides."""
    return fnmatchcase(text.replace("`", ""), pattern.replace("`", "").replace("[", "[[]"))


#: The reviewed reasons. Each names where it is documented.
REASONS: tuple[Reason, ...] = (
    Reason(
        "scrubbing policy, credentials in URLs (README, Scrubbing): the database URL on "
        "the command line",
        field="extra.sys.argv",
        when=FILTERED,
    ),
    Reason(
        "scrubbing policy, field names such as `password` at any depth, frame locals "
        "included (README, Scrubbing); sentry-sdk alone sends them in clear",
        field="exception.values[].stacktrace.frames[].vars",
        when=FILTERED,
    ),
    Reason(
        "the bridge leaves out the ASGI receive/send sub-spans (`exclude_spans` in "
        "telemetry/instrumentation.py): they double the span count for no insight",
        subject="ASGI `http send` sub-span",
        field="*",
        when=ABSENT,
    ),
    Reason(
        "asyncio tasks become spans only when named in `TELEMETRY_ASYNCIO_COROUTINES` "
        "(README, Configuration)",
        subject="span `function` (asyncio task)",
        field="*",
        when=ABSENT,
    ),
    Reason(
        "the failing task's own span (op `function`) is what sentry-sdk's trace context "
        "describes; asyncio tasks become spans only when named in "
        "`TELEMETRY_ASYNCIO_COROUTINES` (README, Configuration)",
        subject="asyncio task failure",
        field="`contexts.trace.*`",
    ),
    Reason(
        "scrubbing policy, the end user's address (README, Scrubbing): on a server span "
        "the network peer is the client; `ScrubbingPolicy(keep_client_ip=True)` keeps it",
        section="Jaeger*",
        subject="server span*",
        field="attribute `net.peer.ip`",
        when=ABSENT,
    ),
    Reason(
        "scrubbing policy, SQL by shape (README, Scrubbing): the statement keeps its shape "
        "and loses its literals",
        subject="SQL query*",
        field="description",
        when=WRONG,
    ),
    *(
        Reason(
            "otlp mode (README, One trace context): Sentry builds the transaction from the "
            "spans, and an OTLP span has no SDK envelope (`sdk`, `server_name`, runtime "
            "context, `extra`); the resource names the SDK (`telemetry.sdk.*`), error "
            "events carry these fields",
            section="Sentry: transactions",
            field=pattern,
            when=ABSENT,
            modes=(BRIDGE_OTLP,),
        )
        for pattern in ("sdk.*", "server_name", "contexts.runtime.*", "extra.sys.argv")
    ),
    Reason(
        "otlp mode (README, One trace context): request headers are span attributes only "
        "when OTel's `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST` names them "
        "(they would reach Jaeger too); error events carry them",
        section="Sentry: transactions",
        field="request.headers.*",
        when=ABSENT,
        modes=(BRIDGE_OTLP,),
    ),
    Reason(
        "otlp mode (README, One trace context): request bodies are no span attributes "
        "(they would reach Jaeger too); error events and envelope mode carry them",
        section="Sentry: transactions",
        field="request.data*",
        when=ABSENT,
        modes=(BRIDGE_OTLP,),
    ),
    Reason(
        "otlp mode (README, One trace context): the email would be a span attribute and "
        "reach Jaeger too; the transaction has `user.id`, error events the email",
        section="Sentry: transactions",
        field="user.email",
        when=ABSENT,
        modes=(BRIDGE_OTLP,),
    ),
    Reason(
        "otlp mode (README, One trace context): a span-built transaction's tags are its "
        "attributes; the server span's `http.*` attributes say it is an HTTP request, no "
        "`asgi.type` attribute is added",
        section="Sentry: transactions",
        field="tags.asgi.type",
        when=ABSENT,
        modes=(BRIDGE_OTLP,),
    ),
    Reason(
        "otlp mode (README, One trace context): the span's status is Sentry's `status` "
        "field, derived by Relay from the OTel status and `http.status_code`; sentry-sdk "
        "copies it into a `status` tag as well",
        field="tags.status",
        when=ABSENT,
        modes=(BRIDGE_OTLP,),
    ),
    Reason(
        "OTel's SQLAlchemy instrumentation records `db.system`, not the DBAPI driver "
        "(README, One trace context)",
        subject="SQL query*",
        field="data.db.driver.name",
        when=ABSENT,
    ),
    Reason(
        "one OTel span per Redis command: on a cache key it is the cache span (op "
        "`cache.*`, the key as description, as sentry-sdk's cache span); the command is "
        "in `db.statement` and the `redis.command` tag (README, One trace context)",
        subject="Redis `*` (`db.redis`)",
        field="description",
        when=WRONG,
    ),
)


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "reason" or "poorer"
    text: str
    failing: tuple[str, ...] = ()  # bridge configurations that fall short without a reason


def _reference(row: Row) -> Cell | None:
    cells = [row.cell(c) for c in row.reference if row.cell(c).state != NA]
    if not cells:
        return None
    return max(cells, key=lambda cell: _RANK[cell.state])


def shortfalls(row: Row) -> dict[str, str]:
    """Bridge configuration -> what it lacks (ABSENT, FILTERED, WRONG, LEAK, "requirement")."""
    found: dict[str, str] = {}
    for config in BRIDGES:
        cell = row.cell(config)
        if row.requirement:
            if cell.state not in (PRESENT, NA):
                found[config] = "requirement"
            continue
        reference = _reference(row)
        if reference is None or reference.state == ABSENT:
            continue
        if cell.state == LEAK:
            found[config] = LEAK
        elif cell.state == NA or _RANK[cell.state] < _RANK[reference.state]:
            found[config] = ABSENT if cell.state == NA else cell.state
    return found


def verdict(row: Row, reasons: tuple[Reason, ...] = REASONS) -> Verdict:
    missing = shortfalls(row)
    if not missing:
        return Verdict("ok", "✓")
    unexplained: list[str] = []
    texts: list[str] = []
    for config, shortfall in missing.items():
        reason = next((r for r in reasons if r.explains(row, config, shortfall)), None)
        if reason is None:
            unexplained.append(config)
        elif reason.text not in texts:
            texts.append(reason.text)
    if not unexplained:
        return Verdict("reason", "reason: " + "; ".join(texts))
    modes = ", ".join(SHORT[c] for c in unexplained)
    what = "requirement not met" if row.requirement else "BRIDGE POORER"
    return Verdict("poorer", f"**✗ {what}** ({modes})", tuple(unexplained))


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        if any(r.key == row.key for r in self.rows):
            raise ValueError(f"duplicate fidelity row {row.key}")
        self.rows.append(row)

    def failing(self) -> list[tuple[Row, Verdict]]:
        return [(r, v) for r in self.rows if (v := verdict(r)).status == "poorer"]


def value_cell(value: object, reference: object = None, *, is_reference: bool = False) -> Cell:
    """The cell of a field whose mere presence counts (the value is not shown)."""
    if value is None:
        return Cell(ABSENT)
    filtered = FILTER_MARK in str(value)
    if filtered:
        return Cell(FILTERED)
    if not is_reference and reference is not None and FILTER_MARK in str(reference):
        return Cell(LEAK)
    return Cell(PRESENT)


def all_configs() -> tuple[str, ...]:
    return CONFIGS
