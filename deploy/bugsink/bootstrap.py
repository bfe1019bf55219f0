"""One-shot Bugsink bootstrap for the docker-compose stack.

Runs in the Bugsink image (service ``bugsink-bootstrap``) once Bugsink is healthy:

1. gets an API token: ``BUGSINK_API_TOKEN`` if set, else Bugsink's own management command
   ``bugsink-manage create_auth_token`` (the container shares Bugsink's data volume, so
   the command writes to the same database; it runs as the volume's owner);
2. through Bugsink's REST API (``/api/canonical/0/``) finds or creates the team and the
   project, so a second ``docker compose up`` reuses them instead of making duplicates;
3. writes ``SENTRY_DSN=...`` to ``BOOTSTRAP_OUTPUT`` (``/bootstrap/sentry.env`` on a volume
   the application containers mount read-only; their entrypoint sources it unless
   ``SENTRY_DSN`` is set in ``.env``).

The admin user itself is created by Bugsink at start (``CREATE_SUPERUSER``, handled by its
``prestart`` management command).

Bugsink builds a project's DSN from its public ``BASE_URL`` (``http://127.0.0.1:8080`` for
the browser), which does not resolve inside the compose network. The DSN written for the
applications therefore gets the scheme and host of ``BUGSINK_INTERNAL_URL`` instead; key
and project id stay as Bugsink issued them.

Only the standard library is used: the Bugsink image has nothing else this script could
rely on across versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

API_PREFIX = "/api/canonical/0"


class BootstrapError(RuntimeError):
    """A step failed; the message says which and why."""


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        raise BootstrapError(f"{name} is not set")
    return value


def wait_until_ready(base_url: str, timeout_s: float) -> None:
    """Poll Bugsink's readiness endpoint: compose health checks can pass before migrations
    of a fresh volume have finished on slow machines."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/health/ready", timeout=5) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        time.sleep(1)
    raise BootstrapError(f"Bugsink at {base_url} not ready after {timeout_s:.0f} s: {last_error}")


def _as_data_owner() -> dict[str, Any]:
    """subprocess arguments that run a command as the owner of Bugsink's data directory.

    The bootstrap container runs as root so it can write to the fresh, root-owned
    /bootstrap volume; the management command must not, or SQLite files it creates in the
    data directory would be root's and Bugsink (a non-root user in its image) could no
    longer write them.
    """
    data_dir = Path(os.environ.get("BUGSINK_DATA_DIR", "/data"))
    if os.geteuid() != 0 or not data_dir.exists():
        return {}
    owner = data_dir.stat()
    if owner.st_uid == 0:
        return {}
    return {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}


def obtain_token() -> str:
    token = os.environ.get("BUGSINK_API_TOKEN", "").strip()
    if token:
        return token
    manage = os.environ.get("BUGSINK_MANAGE", "bugsink-manage")
    result = subprocess.run(
        [manage, "create_auth_token"],
        capture_output=True,
        text=True,
        check=False,
        **_as_data_owner(),
    )
    if result.returncode != 0:
        raise BootstrapError(
            f"{manage} create_auth_token failed ({result.returncode}): {result.stderr.strip()}"
        )
    # The command prints the token as its last line; anything before it is start-up noise.
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise BootstrapError(f"{manage} create_auth_token printed no token")
    return lines[-1]


class BugsinkAPI:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = path if path.startswith("http") else f"{self.base_url}{API_PREFIX}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise BootstrapError(f"{method} {url}: HTTP {exc.code}: {detail}") from exc

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a cursor-paginated list endpoint."""
        items: list[dict[str, Any]] = []
        page: Any = self.request("GET", path)
        while True:
            if isinstance(page, list):  # unpaginated answer
                return items + page
            items.extend(page.get("results", []))
            next_url = page.get("next")
            if not next_url:
                return items
            page = self.request("GET", next_url)

    def ensure_team(self, name: str) -> dict[str, Any]:
        for team in self.list_all("/teams/"):
            if team.get("name") == name:
                return team
        return self.request("POST", "/teams/", {"name": name})

    def ensure_project(self, team_id: str, name: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({"team": team_id})
        for project in self.list_all(f"/projects/?{query}"):
            if project.get("name") == name:
                return project
        created = self.request(
            "POST",
            "/projects/",
            # Bugsink mails on a new issue and on a regression: its side of the
            # "first seen" alerting the Sentry spec asks for.
            {
                "team": team_id,
                "name": name,
                "alert_on_new_issue": True,
                "alert_on_regression": True,
            },
        )
        # The create answer has no DSN (it is derived, not stored): read the project back.
        return self.request("GET", f"/projects/{created['id']}/")


def dsn_for_network(dsn: str, internal_url: str) -> str:
    """The DSN with the scheme, host and port of ``internal_url``."""
    issued = urllib.parse.urlsplit(dsn)
    internal = urllib.parse.urlsplit(internal_url)
    if not issued.username:
        raise BootstrapError(f"DSN from Bugsink has no public key: {dsn!r}")
    netloc = f"{issued.username}@{internal.netloc}"
    return urllib.parse.urlunsplit((internal.scheme, netloc, issued.path, "", ""))


def _host_allowed(host: str, patterns: list[str]) -> bool:
    """Django's ALLOWED_HOSTS match: `*`, `.domain` (the domain and its subdomains), or
    the exact host, case-insensitively."""
    host = host.lower().rstrip(".")
    for pattern in (p.strip().lower() for p in patterns if p.strip()):
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith(".") and (host.endswith(pattern) or host == pattern[1:]):
            return True
    return False


def public_host_warning(public_url: str, allowed_hosts: str | None) -> str | None:
    """A warning when browsers opening ``public_url`` would get HTTP 400 from Bugsink:
    the public host is missing from the ``ALLOWED_HOSTS`` Bugsink runs with (the compose
    file builds that list from ``BUGSINK_PUBLIC_HOST``, a separate variable)."""
    if not allowed_hosts:
        return None  # Bugsink derives the list from its BASE_URL, the public URL itself
    host = urllib.parse.urlsplit(public_url).hostname
    if not host or _host_allowed(host, allowed_hosts.split(",")):
        return None
    return (
        f"BUGSINK_PUBLIC_URL's host {host!r} is not in Bugsink's ALLOWED_HOSTS "
        f"({allowed_hosts}): browsers opening {public_url} get HTTP 400. Set "
        f"BUGSINK_PUBLIC_HOST={host} in .env and restart the bugsink service."
    )


def write_env_file(path: Path, dsn: str, project_id: int | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Written then renamed: an application starting meanwhile sees the old file or the new
    # one, never half of one.
    temporary.write_text(
        "# Written by deploy/bugsink/bootstrap.py; sourced by the application entrypoint.\n"
        f"SENTRY_DSN={dsn}\n"
        f"BUGSINK_PROJECT_ID={project_id}\n"
    )
    temporary.replace(path)


def main() -> int:
    try:
        internal_url = _env("BUGSINK_INTERNAL_URL", "http://bugsink:8000").rstrip("/")
        public_url = _env("BUGSINK_PUBLIC_URL", internal_url).rstrip("/")
        team_name = _env("BUGSINK_TEAM", "telemetry")
        project_name = _env("BUGSINK_PROJECT", "telemetry-demo")
        output = Path(_env("BOOTSTRAP_OUTPUT", "/bootstrap/sentry.env"))
        timeout_s = float(_env("BUGSINK_READY_TIMEOUT_S", "120"))

        warning = public_host_warning(public_url, os.environ.get("ALLOWED_HOSTS"))
        if warning:
            # Not fatal: the services reach Bugsink by its network name either way.
            print(f"bugsink-bootstrap: warning: {warning}", file=sys.stderr)
        wait_until_ready(internal_url, timeout_s)
        api = BugsinkAPI(internal_url, obtain_token())
        team = api.ensure_team(team_name)
        project = api.ensure_project(team["id"], project_name)
        dsn = dsn_for_network(project["dsn"], internal_url)
        write_env_file(output, dsn, project["id"])
    except BootstrapError as exc:
        print(f"bugsink-bootstrap: {exc}", file=sys.stderr)
        return 1
    # The key in the DSN only allows sending events; it is printed without it anyway, as
    # logs travel further than the volume.
    print(f"bugsink-bootstrap: team {team_name!r}, project {project_name!r} (id {project['id']})")
    print(f"bugsink-bootstrap: wrote SENTRY_DSN for {internal_url} to {output}")
    print(f"bugsink-bootstrap: issue search: {public_url}/issues/{project['id']}/all/?q=")
    return 0


if __name__ == "__main__":
    sys.exit(main())
