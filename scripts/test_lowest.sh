#!/usr/bin/env bash
# The library's unit tests against the lowest versions pyproject.toml allows
# (--resolution lowest-direct: every direct dependency at its lower bound), so the lower
# bounds stay true. The test tools themselves are the locked ones. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LOWEST_VENV:-/tmp/otel-sentry-bridge-lowest}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

uv venv -q --allow-existing --python .venv/bin/python "$venv"
# The library and its extras at their lower bounds...
uv pip compile -q --resolution lowest-direct --python "$venv/bin/python" \
  --extra demo pyproject.toml -o "$work/lowest.txt"
# ...and the test tools exactly as locked (they are not what is under test).
uv export -q --frozen --no-hashes --no-header --no-emit-project --all-extras \
  | grep -E '^(pytest|pytest-timeout|hypothesis|sortedcontainers|attrs|pyyaml|iniconfig|pluggy|pygments)==' \
  >"$work/tools.txt"
uv pip install -q --python "$venv/bin/python" -r "$work/lowest.txt" -r "$work/tools.txt"
uv pip install -q --python "$venv/bin/python" --no-deps -e .
echo "lowest-direct set:" $(grep -E '^(opentelemetry-sdk|sentry-sdk|prometheus-client|pydantic|pydantic-settings|fastapi|opentelemetry-instrumentation-fastapi)==' "$work/lowest.txt")

# The deploy checks need the dev tools (bugsink, check-jsonschema, ...), not the library's
# dependencies: they run once, in the main suite.
timeout "${LOWEST_TIMEOUT:-600}" "$venv/bin/pytest" -q -p no:cacheprovider tests \
  --ignore=tests/integration --ignore-glob='tests/test_deploy_*' \
  --ignore=tests/test_benchmarks.py "$@"
