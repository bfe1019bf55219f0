"""The ``telemetry`` command line. One command today: ``telemetry doctor``.

Exit codes: 0 when no check failed, 1 when any check failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from telemetry.doctor import (
    DEFAULT_TIMEOUT_S,
    CheckResult,
    Status,
    format_json,
    format_text,
    is_ok,
    run_checks,
)

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry", description="Tools for the telemetry observability bridge."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor = commands.add_parser(
        "doctor",
        help="check the telemetry configuration and every sink it points at",
        description=(
            "Read the settings the service reads and check each sink: Sentry, the OTLP "
            "endpoint(s), Prometheus, installed versions and committed DSNs. One line per "
            "check: PASS, WARN, FAIL (or SKIP when not applicable)."
        ),
    )
    doctor.add_argument(
        "--send", action="store_true", help="send a real test event to Sentry and a test span"
    )
    doctor.add_argument("--json", action="store_true", help="print the results as JSON")
    doctor.add_argument("--prometheus-url", metavar="URL", help="also check this Prometheus")
    doctor.add_argument(
        "--prometheus-job",
        metavar="JOB",
        help="the scrape job of this service (default: found through service_build_info)",
    )
    doctor.add_argument(
        "--repo",
        type=Path,
        metavar="PATH",
        help="git work tree to scan for committed DSNs (default: the current git repository)",
    )
    doctor.add_argument(
        "--env-file", type=Path, metavar="PATH", help="read settings from this .env file too"
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"timeout of each network call (default {DEFAULT_TIMEOUT_S:g})",
    )
    return parser


def _current_repo() -> Path | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(answer.stdout.strip())


def _doctor(args: argparse.Namespace) -> int:
    # The exporters log their own failures at ERROR; the doctor reports those itself, once.
    noisy = [logging.getLogger(name) for name in ("opentelemetry", "sentry_sdk", "urllib3")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.CRITICAL)
    try:
        return _run_doctor(args)
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)


def _run_doctor(args: argparse.Namespace) -> int:
    repo = args.repo if args.repo is not None else _current_repo()
    results = run_checks(
        send=args.send,
        prometheus_url=args.prometheus_url,
        prometheus_job=args.prometheus_job,
        repo=repo,
        env_file=args.env_file,
        timeout=args.timeout,
    )
    if repo is None:
        results.append(
            CheckResult(
                "dsn-in-repo",
                Status.SKIP,
                "not inside a git repository",
                "pass --repo PATH to scan a work tree for committed DSNs",
            )
        )
    print(format_json(results) if args.json else format_text(results))
    return EXIT_OK if is_ok(results) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits 2 on usage errors and 0 for --help: keep its code, return it.
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command != "doctor":
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.env_file is not None and not args.env_file.is_file():
        print(f"telemetry doctor: error: --env-file {args.env_file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    if args.repo is not None and not args.repo.is_dir():
        print(f"telemetry doctor: error: --repo {args.repo}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.timeout <= 60:
        print("telemetry doctor: error: --timeout must be in (0, 60]", file=sys.stderr)
        return EXIT_USAGE
    return _doctor(args)


if __name__ == "__main__":
    sys.exit(main())
