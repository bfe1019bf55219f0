"""The bridge side by side with OpenTelemetry alone and sentry-sdk alone.

The four configurations of ``app.py`` run against real PostgreSQL and Redis, each in its own
process with its own OTLP and Sentry receivers; ``docs/fidelity.md`` is generated from what
they received (``python -m tests.integration.fidelity --write``) and must be current. Rows
where the bridge delivers less than the native tool without a named reason fail
``test_the_bridge_delivers_at_least_what_the_native_tools_deliver``; the error events are
also replayed into a real Bugsink, which must keep what was sent.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.fidelity.app import BRIDGE_ENVELOPE, BRIDGE_OTLP, SENTRY
from tests.integration.fidelity.fields import flatten
from tests.integration.fidelity.model import (
    ABSENT,
    PRESENT,
    REASONS,
    Cell,
    Reason,
    Report,
    Row,
    verdict,
)
from tests.integration.fidelity.run import Observation, collect
from tests.integration.fidelity.table import COMMAND, build_report, render, stale_diff
from tests.support.bugsink import Bugsink, BugsinkProject

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def observations(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Observation]:
    return collect(postgres_url, redis_url, tmp_path_factory.mktemp("fidelity"))


@pytest.fixture(scope="module")
def report(observations: dict[str, Observation]) -> Report:
    return build_report(observations)


def test_the_committed_table_is_what_the_run_produces(report: Report) -> None:
    diff = stale_diff(render(report))
    assert not diff, f"docs/fidelity.md is out of date: run `{COMMAND}` and commit it\n{diff}"


def test_the_bridge_delivers_at_least_what_the_native_tools_deliver(report: Report) -> None:
    failing = report.failing()
    listed = "\n".join(
        f"  {row.key}: "
        + ", ".join(f"{c}={row.cell(c).render()}" for c in (*row.reference, *result.failing))
        + (f" (requirement: {row.requirement})" if row.requirement else "")
        for row, result in failing
    )
    assert not failing, f"{len(failing)} rows where the bridge delivers less:\n{listed}"


def _envelope(event: dict[str, Any]) -> bytes:
    payload = json.dumps(event).encode()
    header = json.dumps({"event_id": event["event_id"]}).encode()
    item = json.dumps({"type": "event", "length": len(payload)}).encode()
    return b"\n".join((header, item, payload)) + b"\n"


def _replay(bugsink: Bugsink, project: BugsinkProject, event: dict[str, Any]) -> None:
    """Post one event, as its SDK sent it, to Bugsink's envelope endpoint."""
    key = urlsplit(project.dsn).username
    request = urllib.request.Request(
        f"{bugsink.url}/api/{project.id}/envelope/",
        data=_envelope(event),
        method="POST",
        headers={
            "Content-Type": "application/x-sentry-envelope",
            "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.mark.parametrize("config", [SENTRY, BRIDGE_OTLP, BRIDGE_ENVELOPE])
def test_bugsink_stores_the_error_events_with_every_field(
    observations: dict[str, Observation], bugsink: Bugsink, config: str
) -> None:
    project = bugsink.create_project(f"fidelity-{config}-{uuid.uuid4().hex[:6]}")
    events = observations[config].items("event")
    assert events
    for event in events:
        _replay(bugsink, project, event)
    for event in events:
        stored = bugsink.wait_for_event_id(project, event["event_id"])
        lost = sorted(set(flatten(event)) - set(flatten(stored.data)))
        assert not lost, f"Bugsink did not keep {lost} of a {config} event"


# -- the verdict logic, on rows made up for it ---------------------------------------------


def _row(reference: Cell, bridge: Cell, **kwargs: Any) -> Row:
    cells = {SENTRY: reference, BRIDGE_OTLP: bridge, BRIDGE_ENVELOPE: Cell(PRESENT)}
    return Row("Sentry: error events", "subject", "`user.email`", cells, (SENTRY,), **kwargs)


def test_a_row_where_the_bridge_has_less_fails_unless_a_reason_names_it() -> None:
    row = _row(Cell(PRESENT), Cell(ABSENT))
    assert verdict(row).status == "poorer" and verdict(row).failing == (BRIDGE_OTLP,)
    named = (Reason("documented", field="user.email", when=ABSENT),)
    assert verdict(row, named).status == "reason"
    filtered_only = (Reason("documented", field="user.email", when="filtered"),)
    assert verdict(row, filtered_only).status == "poorer"
    assert verdict(_row(Cell(ABSENT), Cell(ABSENT))).status == "ok"


def test_a_requirement_row_fails_whatever_the_native_tool_does() -> None:
    row = _row(Cell("wrong", "2 events"), Cell("wrong", "2 events"), requirement="exactly one")
    assert verdict(row).status == "poorer"


def test_every_reason_is_used_by_the_committed_table() -> None:
    committed = (Path(__file__).resolve().parents[3] / "docs" / "fidelity.md").read_text()
    unused = [reason.text for reason in REASONS if f"reason: {reason.text}" not in committed
              and f"; {reason.text}" not in committed]  # fmt: skip
    assert not unused, f"reasons that explain no row (remove them): {unused}"
