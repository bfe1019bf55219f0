"""The overhead benchmark of ``telemetry``: ``python -m benchmarks`` (see README.md).

One FastAPI app (:mod:`benchmarks.app`) runs under uvicorn in each configuration (no
telemetry, sentry-sdk alone, OpenTelemetry alone, both side by side, and the bridge in its
modes), against local sinks that count what they receive (:mod:`benchmarks.sinks`), under a
saturating load (``wrk``) and a paced one (:mod:`benchmarks.loadgen`).
"""
