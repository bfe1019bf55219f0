"""Fixtures that start real servers for the integration tests.

Servers bind 127.0.0.1 on free ports, are waited for on their readiness endpoints and are
stopped by pid. A missing dependency fails the test with the command that installs it: CI
must never turn an absent server into a silently skipped test.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.support.alertmanager import Alertmanager
from tests.support.bugsink import Bugsink, BugsinkProject
from tests.support.local_server import LocalServer
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.processes import MissingBinaryError, ServerStartError
from tests.support.prometheus import Prometheus
from tests.support.sentry_receiver import SentryReceiver

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
)


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def sentry_receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def bugsink() -> Iterator[Bugsink]:
    """One Bugsink for the whole session; isolate tests with ``bugsink_project``."""
    server = Bugsink()
    try:
        server.start()
    except (ServerStartError, FileNotFoundError) as error:
        pytest.fail(f"Bugsink (PyPI `bugsink`, dev extra) did not start: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bugsink_project(bugsink: Bugsink) -> BugsinkProject:
    """A fresh Bugsink project (own DSN, own events) for one test."""
    return bugsink.create_project()


def _start_or_fail(start: Callable[[], None], what: str) -> None:
    try:
        start()
    except (MissingBinaryError, ServerStartError) as error:
        pytest.fail(f"{what}: {error}", pytrace=False)


ServerT = TypeVar("ServerT", bound=LocalServer)


def _local_servers(kind: type[ServerT]) -> Iterator[Callable[..., ServerT]]:
    """A factory of started servers of ``kind``; all are stopped after the test."""
    started: list[ServerT] = []

    def start(*args: Any, **kwargs: Any) -> ServerT:
        try:
            server = kind(*args, **kwargs)
        except MissingBinaryError as error:
            pytest.fail(str(error), pytrace=False)
        started.append(server)
        _start_or_fail(server.start, f"{kind.name} did not start")
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., Prometheus]]:
    """``prometheus_factory(targets=["127.0.0.1:8000"], rule_files=[...], alertmanager_url=...)``
    starts a Prometheus (keyword arguments of ``Prometheus``)."""
    yield from _local_servers(Prometheus)


@pytest.fixture
def alertmanager_factory() -> Iterator[Callable[..., Alertmanager]]:
    """``alertmanager_factory(config)`` starts an Alertmanager."""
    yield from _local_servers(Alertmanager)


def _tcp_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the machine's PostgreSQL (trust auth, database ``test``)."""
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=5):
            pass
    except Exception as error:  # any failure means the same thing: the database is not usable
        pytest.fail(
            f"PostgreSQL at 127.0.0.1:5432 (database `test`, user postgres) is not usable: "
            f"{error}. Start it with `{POSTGRES_START}`",
            pytrace=False,
        )
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the machine's Redis; answered PING proves it is a Redis, not just a port."""
    reachable = _tcp_reachable("127.0.0.1", 6379)
    if reachable:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            reachable = connection.recv(64).startswith(b"+PONG")
    if not reachable:
        pytest.fail(
            f"Redis at 127.0.0.1:6379 is not answering PING. Start it with `{REDIS_START}`",
            pytrace=False,
        )
    return REDIS_URL
