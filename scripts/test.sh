#!/usr/bin/env bash
# Everything the test suite needs, then lint, types and tests.
source "$(dirname "$0")/_env.sh"

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v busybox >/dev/null 2>&1 || missing+=(busybox)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

.venv/bin/ruff check .
.venv/bin/mypy telemetry deploy/demo
.venv/bin/pytest -q -p no:cacheprovider "$@"

# The same unit tests at the lowest versions pyproject.toml allows, so its lower bounds
# stay true (a full run only: arguments select tests of the main run).
if (($# == 0)); then
  LOWEST_TIMEOUT=600 bash scripts/test_lowest.sh
fi
