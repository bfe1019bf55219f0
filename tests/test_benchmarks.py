"""The overhead benchmark's pieces work (no timing is asserted here).

* app variants start under uvicorn and answer, and their telemetry reaches the sinks;
* the sinks count spans sent by a real OTLP exporter and items of a real Sentry envelope;
* the report math: ratios within a round, medians across rounds, targets, wrk parsing.
"""

from __future__ import annotations

import gzip
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.app import CONFIGS, DEFAULT_CONFIGS, STATIC_PAYLOAD, prepare_database, sqlite_url
from benchmarks.harness import Placement, Server, launch_server, parse_wrk, stop_process
from benchmarks.loadgen import percentile
from benchmarks.profile import component_of, parse_collapsed
from benchmarks.report import (
    Sample,
    added_ratio,
    build_rows,
    evaluate_targets,
    markdown_report,
    median_within_rounds,
    ratio_of,
)
from benchmarks.sinks import SinkPorts, SinkServer, count_envelope

# Four uvicorn processes start at once: generous on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sinks() -> Iterator[tuple[SinkServer, SinkPorts]]:
    server = SinkServer()
    ports = server.start_in_thread()
    try:
        yield server, ports
    finally:
        server.stop()


# -- sinks ----------------------------------------------------------------------------------


def _spans(exporter: object, count: int) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root"):
        for index in range(count - 1):
            with tracer.start_as_current_span(f"child-{index}"):
                pass
    provider.shutdown()


def test_sinks_count_spans_from_a_real_otlp_exporter(sinks: tuple[SinkServer, SinkPorts]) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    server, ports = sinks
    _spans(OTLPSpanExporter(endpoint=f"{ports.otlp_url}/v1/traces"), 3)
    sentry_otlp = f"http://127.0.0.1:{ports.sentry}/api/1/integration/otlp/v1/traces"
    _spans(OTLPSpanExporter(endpoint=sentry_otlp), 2)
    counts = server.counts()
    assert counts["otlp_spans"] == 3
    assert counts["otlp_requests"] == 3  # SimpleSpanProcessor: one export per span
    assert counts["sentry_otlp_spans"] == 2
    assert counts["decode_errors"] == 0


def test_sinks_count_a_real_sentry_envelope(sinks: tuple[SinkServer, SinkPorts]) -> None:
    from sentry_sdk.envelope import Envelope, Item, PayloadRef

    server, ports = sinks
    envelope = Envelope(headers={"event_id": "0" * 32})
    transaction: Any = {"type": "transaction", "spans": [{"span_id": "1"}, {"span_id": "2"}]}
    envelope.add_transaction(transaction)
    envelope.add_event({"message": "boom"})
    envelope.add_item(Item(payload=PayloadRef(json={"discarded_events": []}), type="client_report"))
    body = gzip.compress(envelope.serialize())
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports.sentry}/api/1/envelope/",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-sentry-envelope"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    counts = server.counts()
    assert counts["envelopes"] == 1
    assert counts["transactions"] == 1
    assert counts["transaction_spans"] == 3  # the transaction's root span and its two children
    assert counts["error_events"] == 1
    assert counts["other_items"] == 1
    assert count_envelope(envelope.serialize())["transactions"] == 1


def test_blackhole_accepts_and_never_answers(sinks: tuple[SinkServer, SinkPorts]) -> None:
    _, ports = sinks
    with socket.create_connection(("127.0.0.1", ports.blackhole), timeout=5) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)


# -- app variants -------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_app_variants_start_answer_and_deliver(
    sinks: tuple[SinkServer, SinkPorts], tmp_path: Path
) -> None:
    """One uvicorn per variant (started together), each answers both endpoints, and after a
    flush the sinks have what that variant is meant to send."""
    sink_server, ports = sinks
    database_url = sqlite_url(tmp_path)
    prepare_database(database_url)
    # "both" builds the sentry-alone and the otel-alone wiring in one process; the other
    # bridge variants differ from bridge-otlp only in settings and sink URLs.
    variants = ["bare", "both", "fastapi-native", "bridge-otlp", "bridge-envelope"]
    unpinned = Placement([], [], "test")
    servers: list[Server] = []
    try:
        for config in variants:
            servers.append(
                launch_server(
                    config,
                    placement=unpinned,
                    jaeger_url=ports.otlp_url,
                    sentry_dsn=ports.sentry_dsn(),
                    database_url=database_url,
                    workdir=tmp_path,
                    flush_timeout=5.0,
                )
            )
        delivered: dict[str, dict[str, int]] = {}
        for server in servers:
            server.wait_ready(timeout=45)
            assert server.flush(15), f"{server.config} did not flush:\n{server.log_tail()}"
            before = sink_server.counts()
            for endpoint in ("items", "json", "items"):
                status, body = _get(server.url(endpoint))
                assert status == 200, (server.config, endpoint)
                assert 150 <= len(body) <= 260, (server.config, endpoint, len(body))
            assert server.flush(15), f"{server.config} did not flush:\n{server.log_tail()}"
            after = sink_server.counts()
            delivered[server.config] = {k: after[k] - before[k] for k in after}
    finally:
        for server in servers:
            stop_process(server.process, 10)
    assert not any(delivered["bare"].values()), delivered["bare"]
    assert delivered["both"]["transactions"] == 3, delivered["both"]
    assert delivered["both"]["otlp_spans"] >= 5, delivered["both"]  # server + db spans
    # FastAPI's native telemetry: its server span (+ operation spans) and the db span.
    assert delivered["fastapi-native"]["otlp_spans"] >= 5, delivered["fastapi-native"]
    assert delivered["bridge-otlp"]["otlp_spans"] >= 5, delivered["bridge-otlp"]
    assert delivered["bridge-otlp"]["sentry_otlp_spans"] >= 5, delivered["bridge-otlp"]
    assert delivered["bridge-envelope"]["otlp_spans"] >= 5, delivered["bridge-envelope"]
    assert delivered["bridge-envelope"]["transactions"] == 3, delivered["bridge-envelope"]


def test_every_configuration_is_described() -> None:
    assert DEFAULT_CONFIGS[:4] == ["bare", "sentry", "otel", "both"]
    assert {"bridge-otlp", "bridge-envelope", "bridge-prod", "bridge-down"} <= set(CONFIGS)
    assert {CONFIGS[n].sinks for n in CONFIGS} == {"up", "down", "blackhole"}
    assert all(CONFIGS[n].default for n in DEFAULT_CONFIGS)
    assert 150 <= len(str(STATIC_PAYLOAD)) <= 260


# -- report math ----------------------------------------------------------------------------


def _sample(config: str, rnd: int, rps: float, cpu_s: float, p99: float = 10.0) -> Sample:
    return Sample(
        config=config,
        endpoint="items",
        load="saturation",
        round=rnd,
        requests=1000,
        duration_s=10.0,
        rps=rps,
        p50_ms=5.0,
        p99_ms=p99,
        errors=0,
        cpu_s=cpu_s,
        rss_mb=80.0,
        sink={"otlp_spans": 3000, "sentry_otlp_spans": 1000, "transaction_spans": 1000},
    )


def test_ratios_are_taken_within_a_round_then_the_median() -> None:
    # Round 1 is slow for everyone (a noisy neighbour): the within-round ratio is stable.
    samples = [
        _sample("bare", 0, 1000, 1.0),
        _sample("otel", 0, 900, 1.2),
        _sample("bare", 1, 500, 2.0),
        _sample("otel", 1, 400, 2.5),
        _sample("bare", 2, 1000, 1.0),
        _sample("otel", 2, 950, 1.1),
    ]
    ratio = median_within_rounds(samples, "otel", "bare", "items", "saturation", ratio_of("rps"))
    assert ratio == pytest.approx(0.9)  # median of 0.9, 0.8, 0.95
    rows = {r.config: r for r in build_rows(samples, ["bare", "otel"])}
    assert rows["otel"].ratio_to_bare == pytest.approx(0.9)
    assert rows["otel"].rps == 900  # plain median of the otel runs
    assert rows["otel"].cpu_us == pytest.approx(1200)  # 1.2 s / 1000 requests
    assert rows["otel"].cpu_added_us == pytest.approx(200)  # median of 200, 500, 100
    assert rows["otel"].cpu_ratio_to_bare == pytest.approx(1.2)  # median of 1.2, 1.25, 1.1
    assert rows["bare"].cpu_added_us == 0
    assert rows["otel"].otlp_spans == 3.0
    assert rows["otel"].sentry_spans == 2.0


def test_a_round_missing_a_configuration_is_left_out() -> None:
    samples = [_sample("bare", 0, 1000, 1.0), _sample("otel", 0, 800, 1.0)]
    samples.append(_sample("otel", 1, 100, 1.0))  # no bare in round 1
    ratio = median_within_rounds(samples, "otel", "bare", "items", "saturation", ratio_of("rps"))
    assert ratio == pytest.approx(0.8)
    assert (
        median_within_rounds(samples, "x", "bare", "items", "saturation", ratio_of("rps")) is None
    )


def test_targets() -> None:
    samples: list[Sample] = []
    for rnd in range(2):
        for load in ("saturation", "paced"):
            for config, rps, cpu, p99 in (
                ("bare", 1000, 1.0, 10.0),
                ("otel", 900, 1.2, 11.0),
                ("bridge-otlp", 880, 1.21, 11.0),
                ("bridge-down", 800, 1.3, 12.0),
                ("bridge-prod", 990, 1.1, 10.0),
            ):
                sample = _sample(config, rnd, rps, cpu, p99)
                sample.load = load
                samples.append(sample)
    assert added_ratio(samples, "bridge-otlp", "otel", "items", "paced") == pytest.approx(1.05)
    targets = {t.name: t for t in evaluate_targets(samples)}
    staging = "staging (saturation): bridge-otlp added CPU/request vs otel alone's added CPU"
    assert targets[staging].passed is True
    production = targets["production (saturation): bridge-prod CPU/request vs bare"]
    assert production.value == pytest.approx(1.1)
    assert production.passed is True
    assert "production (paced): bridge-prod CPU/request vs bare" in targets
    down = targets["bridge-down throughput vs bridge-otlp"]
    assert down.value == pytest.approx(800 / 880)
    assert down.passed is False
    assert targets["bridge-down p99 vs bridge-otlp"].passed is False
    text = markdown_report(
        build_rows(samples, ["bare", "otel", "bridge-otlp", "bridge-down", "bridge-prod"]),
        list(targets.values()),
        {
            "cpu_model": "x",
            "nproc": 2,
            "python": "3.11",
            "kernel": "k",
            "date": "d",
            "command": "c",
        },
        ["a note"],
    )
    assert "### /items, saturation" in text and "**missed**" in text and "a note" in text


WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8000/json
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.61ms    2.08ms  34.41ms   90.05%
    Req/Sec     1.51k   123.45     1.70k    73.33%
  Latency Distribution
     50%   10.22ms
     75%   11.02ms
     90%   12.38ms
     99%  850.00us
  4523 requests in 3.01s, 1.07MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   1502.66
Transfer/sec:    363.10KB
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 4523
    assert result.duration_s == pytest.approx(3.01)
    assert result.rps == pytest.approx(1502.66)
    assert result.p50_ms == pytest.approx(10.22)
    assert result.p99_ms == pytest.approx(0.85)
    assert result.errors == 7


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    assert percentile(list(map(float, range(101))), 99) == pytest.approx(99.0)


def test_profile_aggregation() -> None:
    site = "/v/lib/python3.11/site-packages"
    stdlib = "/r/lib/python3.11"
    lines = [
        f"thread (1): MainThread;run ({stdlib}/asyncio/runners.py);"
        f"capture ({site}/sentry_sdk/api.py);dumps ({stdlib}/json/__init__.py) 3",
        f"thread (2): OtelBatchSpanRecordProcessor;export (/w/telemetry/tracing.py);"
        f"_encode_span ({site}/opentelemetry/exporter/otlp/proto/common/x.py) 2",
    ]
    profile = parse_collapsed(lines)
    assert profile.total == 5
    assert profile.owners["sentry_sdk"] == 3  # json.dumps called by sentry-sdk is its cost
    assert profile.owners["opentelemetry.exporter.otlp"] == 2
    assert profile.inclusive["telemetry (bridge)"] == 2
    assert profile.threads["OtelBatchSpanRecordProcessor"] == 2
    assert component_of(f"{stdlib}/threading.py") is None
