"""``python -m benchmarks``: run the overhead benchmark, print the tables, write the JSON."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.app import CONFIGS, DEFAULT_CONFIGS
from benchmarks.harness import Options, run_benchmark
from benchmarks.report import (
    build_rows,
    evaluate_targets,
    machine_info,
    markdown_report,
    write_json,
)

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_CONFIGS = ["bare", "otel", "bridge-otlp", "bridge-prod"]


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Overhead of telemetry configurations on one FastAPI app (see README.md).",
    )
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per phase; default 10 (quick: 3)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="paced load, requests/s")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--configs", type=_csv, default=None, help=f"comma-separated, of: {','.join(CONFIGS)}"
    )
    parser.add_argument("--endpoints", type=_csv, default=["items", "json"])
    parser.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (e.g. postgresql+psycopg://postgres@127.0.0.1/test); "
        "default: a SQLite file in a temp dir",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: 1 round, 3 s phases, configs {','.join(QUICK_CONFIGS)} (unless given)",
    )
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.configs = args.configs or QUICK_CONFIGS
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    args.configs = args.configs or list(DEFAULT_CONFIGS)
    if "bare" not in args.configs:
        args.configs.insert(0, "bare")  # every ratio is to bare, within a round
    bad = [e for e in args.endpoints if e not in ("items", "json")]
    if bad:
        parser.error(f"unknown endpoint(s) {bad}; known: items, json")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    options = Options(
        rounds=args.rounds,
        duration=args.duration,
        rate=args.rate,
        connections=args.connections,
        configs=args.configs,
        endpoints=args.endpoints,
        database_url=args.database_url,
    )
    samples, notes = run_benchmark(options)
    rows = build_rows(samples, options.configs)
    targets = evaluate_targets(samples)
    machine = machine_info(shlex.join(["python", "-m", "benchmarks", *argv]))
    if options.database_url:
        notes.append("database: PostgreSQL (--database-url)")
    params = {k: v for k, v in asdict(options).items() if k not in ("log", "database_url")}
    path = write_json(
        args.output_dir,
        machine=machine,
        params=params,
        samples=samples,
        rows=rows,
        targets=targets,
        notes=notes,
    )
    print(markdown_report(rows, targets, machine, notes))
    print(f"\nJSON: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
