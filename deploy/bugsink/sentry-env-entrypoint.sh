#!/bin/sh
# Entrypoint of the application image (deploy/Dockerfile): a SENTRY_DSN from the
# environment (.env) wins; otherwise the DSN that the bugsink-bootstrap service wrote to
# the shared volume is used. The library treats an absent SENTRY_DSN as "Sentry off", so
# an empty one is removed rather than passed on.
set -eu

sentry_env_file="${SENTRY_ENV_FILE:-/bootstrap/sentry.env}"

if [ -z "${SENTRY_DSN:-}" ] && [ -r "$sentry_env_file" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$sentry_env_file"
    set +a
fi

if [ -z "${SENTRY_DSN:-}" ]; then
    unset SENTRY_DSN
fi

exec "$@"
