#!/usr/bin/env bash
# The local demo: the demo service and its downstream with telemetry on, embedded
# defaults (SQLite, no Redis, Sentry events and spans written to ./demo-output/).
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python -m demo "$@"
