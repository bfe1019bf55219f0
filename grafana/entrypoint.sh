#!/bin/sh
# Entrypoint of the compose stack's Grafana (docker-compose.yml runs it with /bin/sh): the
# dashboards get this deployment's link URLs, then Grafana starts as its image starts it
# (/run.sh, the image's own entrypoint).
#
# The link variables of the dashboards, jaeger_url and sentry_issues_url
# (grafana/generate.py), have local defaults. Grafana replaces $VAR / ${VAR} from its
# environment in provisioning files (datasources.yml gets SENTRY_ISSUES_URL that way), but
# not in dashboard JSON: "Use environment variables in dashboard provisioning
# configuration, but not in the dashboard definition files themselves" (Grafana's
# provisioning documentation). So the committed dashboards are copied to the path the
# dashboard provider reads, with each default replaced by JAEGER_PUBLIC_URL and
# SENTRY_ISSUES_URL; an unset or empty variable keeps its default. The copy is remade at
# every start: restart Grafana after changing either variable.
#
# Variables (for tests; the defaults are the container's paths):
#   DASHBOARDS_SOURCE_DIR  /etc/grafana/dashboards   (grafana/dashboards, read-only)
#   DASHBOARDS_DIR         /var/lib/grafana/dashboards (provisioning/dashboards/dashboards.yml)
#   GRAFANA_ENTRYPOINT     /run.sh
set -eu

source_dir="${DASHBOARDS_SOURCE_DIR:-/etc/grafana/dashboards}"
target_dir="${DASHBOARDS_DIR:-/var/lib/grafana/dashboards}"
grafana_entrypoint="${GRAFANA_ENTRYPOINT:-/run.sh}"

# grafana/generate.py's DEFAULT_JAEGER_URL and DEFAULT_SENTRY_ISSUES_URL (tested equal).
default_jaeger_url="http://127.0.0.1:16686"
default_sentry_issues_url="http://127.0.0.1:8080/issues/1/all/?q="

jaeger_url="${JAEGER_PUBLIC_URL:-$default_jaeger_url}"
sentry_issues_url="${SENTRY_ISSUES_URL:-$default_sentry_issues_url}"

for value in "$jaeger_url" "$sentry_issues_url"; do
    case "$value" in
        *[![:print:]]*)
            echo "grafana-entrypoint: refusing a link URL with control characters: $value" >&2
            exit 1
            ;;
    esac
done

# A basic regular expression matching $1 literally.
regex_literal() { printf '%s' "$1" | sed -e 's/[].[*^$\\]/\\&/g'; }
# $1 as the inside of a JSON string, escaped for the replacement side of sed's s command.
json_replacement() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | sed -e 's/[\\&]/\\&/g'
}

d="$(printf '\001')"  # sed delimiter: no URL holds it
rules="s${d}\"$(regex_literal "$default_jaeger_url")\"${d}\"$(json_replacement "$jaeger_url")\"${d}g
s${d}\"$(regex_literal "$default_sentry_issues_url")\"${d}\"$(json_replacement "$sentry_issues_url")\"${d}g"

staging="$target_dir.rendering"
rm -rf "$staging"
mkdir -p "$staging"
for dashboard in "$source_dir"/*.json; do
    [ -e "$dashboard" ] || { echo "grafana-entrypoint: no dashboards in $source_dir" >&2; exit 1; }
    sed -e "$rules" "$dashboard" > "$staging/$(basename "$dashboard")"
done
rm -rf "$target_dir"
mv "$staging" "$target_dir"
echo "grafana-entrypoint: dashboards in $target_dir link to $jaeger_url and $sentry_issues_url" >&2

exec "$grafana_entrypoint" "$@"
