#!/bin/sh
# Entrypoint of the compose stack's Alertmanager (docker-compose.yml: /bin/sh runs it from
# the mounted /etc/alertmanager; the prom/alertmanager image is busybox, no bash).
#
# Pages reach PagerDuty only when a routing key is configured. The pagerduty receiver of
# alertmanager.yml reads its key from a file (the compose secret pagerduty_routing_key).
# With no real key there (the file missing or empty, or the `not-configured` placeholder
# of secrets.example/), Alertmanager would still post every page, alert text and links
# included, to PagerDuty's public endpoint, which refuses it. In that case Alertmanager
# runs on a copy of the config whose page route goes to `pagerduty-not-configured`, a
# receiver with no integration: pages still reach Slack (the route continues there) and
# nothing leaves for PagerDuty. With a key, the config is used as it is.
#
# Variables (for tests; the defaults are the container's paths):
#   PAGERDUTY_ROUTING_KEY_FILE       /run/secrets/pagerduty_routing_key
#   ALERTMANAGER_BINARY              /bin/alertmanager
#   ALERTMANAGER_RENDERED_CONFIG_DIR /alertmanager/config-without-pagerduty (the storage
#                                    volume: always writable by the image's user)
set -eu

key_file="${PAGERDUTY_ROUTING_KEY_FILE:-/run/secrets/pagerduty_routing_key}"
binary="${ALERTMANAGER_BINARY:-/bin/alertmanager}"
rendered_dir="${ALERTMANAGER_RENDERED_CONFIG_DIR:-/alertmanager/config-without-pagerduty}"
placeholder="not-configured"

key=""
if [ -r "$key_file" ]; then
    key="$(tr -d ' \t\r\n' < "$key_file")"
fi

if [ -n "$key" ] && [ "$key" != "$placeholder" ]; then
    echo "alertmanager-entrypoint: PagerDuty routing key found in $key_file: pages go to PagerDuty and Slack" >&2
    exec "$binary" "$@"
fi

config="/etc/alertmanager/alertmanager.yml"
for arg in "$@"; do
    case "$arg" in
        --config.file=*) config="${arg#--config.file=}" ;;
    esac
done

mkdir -p "$rendered_dir"
# Template paths in the config are relative to the config file: the copy sees the same.
ln -sfn "$(dirname "$config")/templates" "$rendered_dir/templates"
sed 's/^\([[:space:]]*receiver:[[:space:]]*\)pagerduty[[:space:]]*$/\1pagerduty-not-configured/' \
    "$config" > "$rendered_dir/alertmanager.yml"
if grep -q '^[[:space:]]*receiver:[[:space:]]*pagerduty[[:space:]]*$' "$rendered_dir/alertmanager.yml" \
    || ! grep -q '^[[:space:]]*receiver:[[:space:]]*pagerduty-not-configured[[:space:]]*$' "$rendered_dir/alertmanager.yml"; then
    echo "alertmanager-entrypoint: could not take the pagerduty route out of $config" >&2
    exit 1
fi
echo "alertmanager-entrypoint: no PagerDuty routing key in $key_file: pages go to Slack only" >&2

for arg do
    shift
    case "$arg" in
        --config.file=*) arg="--config.file=$rendered_dir/alertmanager.yml" ;;
    esac
    set -- "$@" "$arg"
done
exec "$binary" "$@"
