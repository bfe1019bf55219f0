"""A real Bugsink server (PyPI ``bugsink``), the Sentry-compatible sink for error events.

Bugsink runs under gunicorn (what it ships for production) with SQLite in a temporary
directory, bound to 127.0.0.1. Digestion is synchronous (``SNAPPEA.TASK_ALWAYS_EAGER``): an
event is stored before the ingest request is answered, so once ``sentry_sdk.flush()`` returns
the event is readable through the canonical REST API (``/api/canonical/0/``), which is how
tests read events back. Bugsink drops transactions by design.

Bugsink's 120-odd migrations cost ~10 s of CPU, so they run once per Bugsink version into a
template directory that later instances copy.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from tests.support.net import LOOPBACK, free_port, http_ok, poll_until
from tests.support.processes import ManagedProcess, ServerStartError

API_ROOT = "/api/canonical/0"
SUPERUSER_EMAIL = "admin@example.org"
_TOKEN_FILE = "api_token.txt"
_SQLITE_FILES = ("db.sqlite3", "snappea.sqlite3")

# Runs inside `bugsink-manage shell` (one Django start-up instead of four commands).
_INITIALISE_DATABASE = f"""
from django.core.management import call_command
from django.contrib.auth import get_user_model
from bsmain.models import AuthToken
call_command("migrate", verbosity=0, skip_checks=True)
call_command("migrate", "snappea", database="snappea", verbosity=0, skip_checks=True)
get_user_model().objects.create_superuser(
    username="{SUPERUSER_EMAIL}", email="{SUPERUSER_EMAIL}", password="{secrets.token_hex(16)}")
print("BUGSINK_TOKEN=" + AuthToken.create_full_access(description="telemetry tests").token)
"""


def _venv_script(name: str) -> str:
    """A console script installed next to the running interpreter (the project venv)."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: run `uv sync --all-extras`")
    return str(script)


def _write_conf(base_dir: Path, port: int) -> None:
    """The Bugsink settings module (``bugsink_conf``), after its ``local`` template."""
    conf = f'''from bugsink.settings.default import *  # noqa: F403

SECRET_KEY = "{secrets.token_urlsafe(50)}"
DEBUG = False
ALLOWED_HOSTS = ["{LOOPBACK}", "localhost"]
DATABASES["default"]["NAME"] = "{base_dir}/db.sqlite3"  # noqa: F405
DATABASES["snappea"]["NAME"] = "{base_dir}/snappea.sqlite3"  # noqa: F405
# Digest inside the ingest request: no background worker, no race between send and read.
SNAPPEA = {{"TASK_ALWAYS_EAGER": True, "NUM_WORKERS": 1}}
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
BUGSINK = {{
    "BASE_URL": "http://{LOOPBACK}:{port}",
    "PHONEHOME": False,
    "USER_REGISTRATION": "CB_NOBODY",
    "INGEST_STORE_BASE_DIR": "{base_dir}/ingestion",
    # Load tests must not hit the production quotas (1,000 events per 5 minutes).
    "MAX_EVENTS_PER_PROJECT_PER_5_MINUTES": 1_000_000,
    "MAX_EVENTS_PER_PROJECT_PER_HOUR": 1_000_000,
    "MAX_EVENTS_PER_5_MINUTES": 1_000_000,
    "MAX_EVENTS_PER_HOUR": 1_000_000,
}}
'''
    (base_dir / "bugsink_conf.py").write_text(conf)


def _django_env(base_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "bugsink_conf"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(base_dir), env.get("PYTHONPATH")]))
    # The tests' own Sentry/OTel settings must not leak into the server under test.
    for name in list(env):
        if name.startswith(("SENTRY_", "OTEL_")):
            del env[name]
    return env


def migrated_template(timeout: float = 120.0) -> Path:
    """Directory with migrated SQLite files and an API token, built once per Bugsink version."""
    cache_root = Path(tempfile.gettempdir()) / "telemetry-tests"
    template = cache_root / f"bugsink-{installed_version('bugsink')}-template"
    if (template / _TOKEN_FILE).exists():
        return template
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="bugsink-template-", dir=cache_root))
    _write_conf(staging, port=8000)
    process = ManagedProcess(
        [_venv_script("bugsink-manage"), "shell", "-c", _INITIALISE_DATABASE],
        log_path=staging / "initialise.log",
        cwd=staging,
        env=_django_env(staging),
    )
    try:
        process.process.wait(timeout=timeout)
    finally:
        process.stop()
    output = process.log_tail(max_chars=100_000)
    tokens = [
        line.split("=", 1)[1] for line in output.splitlines() if line.startswith("BUGSINK_TOKEN=")
    ]
    if process.process.returncode != 0 or not tokens:
        raise ServerStartError(
            f"Bugsink migrations failed; log {process.log_path}:\n{output[-4000:]}"
        )
    (staging / _TOKEN_FILE).write_text(tokens[0].strip())
    try:
        staging.rename(template)
    except OSError:
        # Another test process finished the same template first; theirs is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    return template


@dataclass(frozen=True)
class BugsinkProject:
    id: int
    name: str
    dsn: str


@dataclass(frozen=True)
class StoredEvent:
    """An event as Bugsink stored it; ``data`` is the Sentry event JSON."""

    id: str
    event_id: str
    issue_id: str
    project_id: int
    data: dict[str, Any]

    @property
    def trace_id(self) -> str | None:
        trace_id = self.data.get("contexts", {}).get("trace", {}).get("trace_id")
        return None if trace_id is None else str(trace_id)

    @property
    def tags(self) -> dict[str, str]:
        """Tags as a dict, whether the SDK sent a mapping or a list of pairs."""
        raw = self.data.get("tags") or {}
        pairs = raw.items() if isinstance(raw, dict) else raw
        return {str(key): str(value) for key, value in pairs}


class BugsinkError(RuntimeError):
    """A Bugsink API call failed; the message carries the status and response body."""


class Bugsink:
    """One Bugsink instance; ``with Bugsink() as bugsink: dsn = bugsink.create_project().dsn``."""

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.base_dir: Path | None = None
        self.api_token = ""
        self._server: ManagedProcess | None = None
        self._team_id: str | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._server is None else self._server.pid

    def start(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="bugsink-"))
        self.port = free_port()
        _write_conf(self.base_dir, self.port)
        # gunicorn boots (Django start-up, seconds of CPU) while the template is built or
        # copied: its workers open SQLite lazily, on the first request that needs it.
        self._server = ManagedProcess(
            [
                _venv_script("gunicorn"),
                "--bind",
                f"{LOOPBACK}:{self.port}",
                "--workers",
                "1",
                # Threads keep the test's API reads answered while an ingest request digests.
                "--threads",
                "4",
                "--timeout",
                "60",
                "--no-control-socket",
                "bugsink.wsgi",
            ],
            log_path=self.base_dir / "gunicorn.log",
            cwd=self.base_dir,
            env=_django_env(self.base_dir),
            # SIGQUIT is gunicorn's immediate shutdown: SIGTERM would wait out the graceful
            # timeout for keep-alive connections that sentry-sdk's pool holds open.
            stop_signal=signal.SIGQUIT,
        )
        try:
            template = migrated_template(timeout=self.startup_timeout)
            for name in _SQLITE_FILES:
                if (self.base_dir / name).exists():
                    raise ServerStartError(f"Bugsink opened {name} before it was copied in place")
                # Copy then rename: SQLite must never see a half-written database file.
                partial = self.base_dir / f"{name}.partial"
                shutil.copy2(template / name, partial)
                os.replace(partial, self.base_dir / name)
            self.api_token = (template / _TOKEN_FILE).read_text().strip()
            self._server.wait_until_ready(
                lambda: http_ok(f"{self.url}/health/ready"), self.startup_timeout, "Bugsink"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> Bugsink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def api(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call the canonical API with the full-access token; ``path`` is relative to it."""
        url = path if path.startswith("http") else f"{self.url}{API_ROOT}{path}"
        body = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.api_token}")
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise BugsinkError(f"{method} {url} -> {error.code}: {detail}") from error

    def _paginate(self, path: str) -> Iterator[dict[str, Any]]:
        next_url: str | None = path
        while next_url:
            page = self.api("GET", next_url)
            yield from page["results"]
            next_url = page.get("next")

    def create_project(self, name: str | None = None) -> BugsinkProject:
        """A new project (in the shared test team); each test can have its own, isolated one."""
        if self._team_id is None:
            team = self.api("POST", "/teams/", {"name": f"telemetry-tests-{uuid.uuid4().hex[:8]}"})
            self._team_id = str(team["id"])
        project_name = name or f"project-{uuid.uuid4().hex[:8]}"
        created = self.api("POST", "/projects/", {"team": self._team_id, "name": project_name})
        detail = self.api("GET", f"/projects/{created['id']}/")
        return BugsinkProject(id=int(detail["id"]), name=detail["name"], dsn=detail["dsn"])

    def issues(self, project: BugsinkProject) -> list[dict[str, Any]]:
        return list(self._paginate(f"/issues/?project={project.id}"))

    def events(self, project: BugsinkProject) -> list[StoredEvent]:
        """Every stored event of ``project`` with its full data (oldest issue first)."""
        stored: list[StoredEvent] = []
        for issue in self.issues(project):
            query = urllib.parse.urlencode({"issue": issue["id"], "order": "asc"})
            for listed in self._paginate(f"/events/?{query}"):
                stored.append(self._to_stored_event(self.api("GET", f"/events/{listed['id']}/")))
        return stored

    def event_by_sdk_id(self, project: BugsinkProject, event_id: str) -> StoredEvent | None:
        """The event the SDK sent with ``event_id`` (what ``capture_exception`` returns)."""
        query = urllib.parse.urlencode(
            {"project": project.id, "event_id": str(uuid.UUID(event_id))}
        )
        try:
            return self._to_stored_event(self.api("GET", f"/events/lookup/?{query}"))
        except BugsinkError as error:
            if "-> 404" in str(error):
                return None
            raise

    def wait_for_event(
        self,
        project: BugsinkProject,
        predicate: Callable[[StoredEvent], bool] = lambda event: True,
        timeout: float = 10.0,
    ) -> StoredEvent:
        """The first stored event of ``project`` that matches, polling until ``timeout``."""

        def first_match() -> StoredEvent | None:
            return next((event for event in self.events(project) if predicate(event)), None)

        return poll_until(first_match, timeout, interval=0.2, describe="a matching Bugsink event")

    def wait_for_event_id(
        self, project: BugsinkProject, event_id: str, timeout: float = 10.0
    ) -> StoredEvent:
        return poll_until(
            lambda: self.event_by_sdk_id(project, event_id),
            timeout,
            interval=0.2,
            describe=f"Bugsink event {event_id}",
        )

    @staticmethod
    def _to_stored_event(detail: dict[str, Any]) -> StoredEvent:
        return StoredEvent(
            id=str(detail["id"]),
            event_id=str(detail["event_id"]),
            issue_id=str(detail["issue"]),
            project_id=int(detail["project"]),
            data=detail["data"],
        )


if __name__ == "__main__":
    # `python -m tests.support.bugsink` builds the migrated template ahead of the test run
    # (e.g. in the background while CI lints), so the session fixture starts in seconds.
    print(migrated_template())
