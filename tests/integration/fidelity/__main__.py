"""Generate docs/fidelity.md from a fresh run of the four configurations.

    python -m tests.integration.fidelity --write   # rewrite docs/fidelity.md
    python -m tests.integration.fidelity --check   # exit 1 (with a diff) if it is stale

Needs PostgreSQL (127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379), as the
test suite does; takes about 15 seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.integration.fidelity.run import collect
from tests.integration.fidelity.table import COMMAND, DOCUMENT, build_report, render, stale_diff

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def generate(postgres_url: str = POSTGRES_URL, redis_url: str = REDIS_URL) -> str:
    with tempfile.TemporaryDirectory(prefix="fidelity-") as work_dir:
        observations = collect(postgres_url, redis_url, Path(work_dir))
    return render(build_report(observations))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"rewrite {DOCUMENT.name}")
    mode.add_argument("--check", action="store_true", help="exit 1 if it is out of date")
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--redis", default=REDIS_URL)
    args = parser.parse_args(argv)
    text = generate(args.postgres, args.redis)
    if args.write:
        DOCUMENT.write_text(text)
        print(f"wrote {DOCUMENT}")
        return 0
    diff = stale_diff(text)
    if diff:
        print(f"{DOCUMENT} is out of date; run: {COMMAND}\n{diff}")
        return 1
    print(f"{DOCUMENT} is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
