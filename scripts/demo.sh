#!/usr/bin/env bash
# The local demo: the demo service and its downstream with telemetry on, embedded
# defaults (SQLite, no Redis, Sentry events and spans written to ./demo-output/).
source "$(dirname "$0")/_env.sh"
# Each service is its own interpreter: cached bytecode makes their start-up seconds faster.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="${XDG_CACHE_HOME:-$HOME/.cache}/telemetry-pycache"
exec .venv/bin/python -m demo "$@"
