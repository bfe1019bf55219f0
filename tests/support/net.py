"""Small networking helpers shared by the real-server test fixtures.

Everything here binds or talks to 127.0.0.1 only: tests must never reach beyond the machine.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

LOOPBACK = "127.0.0.1"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Used for subprocesses that need the port on their command line; in-process servers bind
    port 0 directly instead, which has no race at all.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def decompress_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo the HTTP ``Content-Encoding`` the way an ingestion server would.

    sentry-sdk 2.75 compresses envelopes with brotli when the ``brotli`` module is importable
    (it is in this venv) and with gzip otherwise; OTLP exporters use gzip when asked to.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # imported lazily: only needed when a client really sends brotli

        decoded: bytes = brotli.decompress(body)
        return decoded
    raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")


def poll_until(
    produce: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    describe: str = "condition",
) -> T:
    """Call ``produce`` until it returns something other than None (or falsy), then return it.

    Raises ``TimeoutError`` naming ``describe`` when the deadline passes, so a failing test
    says what it was waiting for instead of hanging or asserting on an empty list.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = produce()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {describe}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET on ``url`` answers 2xx; False on any connection error or other status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


class QuietThreadingHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server whose request threads never keep the test process alive."""

    daemon_threads = True
    # Exporters keep connections alive; a short listen backlog would refuse bursts of batches.
    request_queue_size = 64


class BackgroundHTTPServer:
    """Runs a ``BaseHTTPRequestHandler`` subclass on 127.0.0.1 (port chosen by the kernel)
    in a background thread. Subclasses provide the handler; use as a context manager.
    ``bind_port`` set before ``start`` binds that port instead (a sink coming back where
    it was)."""

    bind_port = 0

    def __init__(self, handler_class: type[BaseHTTPRequestHandler]) -> None:
        self._handler_class = handler_class
        self._server: QuietThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = QuietThreadingHTTPServer((LOOPBACK, self.bind_port), self._handler_class)
        # Handlers reach their owner (where received data is stored) through the server object.
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def get_json(
    url: str, params: Mapping[str, str | float] | None = None, timeout: float = 10.0
) -> Any:
    """GET ``url`` (with query ``params``) and decode the JSON answer; HTTP errors include
    the response body, which is where Prometheus and Alertmanager explain a bad query."""
    full_url = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    try:
        with urllib.request.urlopen(full_url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:2000]
        raise RuntimeError(f"GET {full_url} -> {error.code}: {detail}") from error
