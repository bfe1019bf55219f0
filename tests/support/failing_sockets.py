"""Real misbehaving endpoints on 127.0.0.1 for resilience tests: a listener that never
answers, an HTTP server that answers late, one that answers a byte at a time forever (slow
drip), and a port that refuses connections."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.net import LOOPBACK, BackgroundHTTPServer
from tests.support.otlp_receiver import read_request_body


@dataclass
class Endpoint:
    """Where a misbehaving server listens."""

    host: str
    port: int
    accepted_connections: list[socket.socket] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, as scrape targets and gRPC endpoints are written."""
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def accepting(
    on_connection: Callable[[socket.socket], Any],
    stopping: threading.Event,
    *,
    backlog: int = 64,
    name: str = "accept",
) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 whose accepted connections go to ``on_connection``, on
    a thread, until the block exits (then ``stopping`` is set); yields the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(backlog)
    listener.settimeout(0.1)  # lets the accept loop notice the stop request

    def accept_forever() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            on_connection(connection)

    acceptor = threading.Thread(target=accept_forever, name=name, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        acceptor.join(timeout=2)
        listener.close()


@contextlib.contextmanager
def blackhole_listener() -> Iterator[Endpoint]:
    """Accept TCP connections and never read from nor write to them.

    Clients see a completed connect and then silence until their own timeout fires: the
    failure mode of a hung collector or a firewall that drops packets after the handshake.
    """
    # Held open (and unread) until the context exits, so the peer never sees EOF.
    accepted: list[socket.socket] = []
    with accepting(accepted.append, threading.Event(), backlog=128, name="blackhole") as port:
        try:
            yield Endpoint(LOOPBACK, port, accepted)
        finally:
            for connection in accepted:
                connection.close()


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines on stderr would drown pytest's output."""

    def _answer_late(self) -> None:
        server: SlowHTTPServer = self.server.owner  # type: ignore[attr-defined]
        if self.command in ("POST", "PUT", "PATCH"):
            read_request_body(self)
        server.count_request()
        time.sleep(server.delay_s)
        body = b"{}"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up waiting, which is precisely what these tests provoke.
            return

    do_GET = _answer_late
    do_POST = _answer_late
    do_PUT = _answer_late


class SlowHTTPServer(BackgroundHTTPServer):
    """Answers every request 200 ``{}``, but only after ``delay_s`` seconds."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(_SlowHandler)
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._request_count = 0

    def count_request(self) -> None:
        with self._lock:
            self._request_count += 1

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count


@contextlib.contextmanager
def slow_http_server(delay_s: float) -> Iterator[SlowHTTPServer]:
    with SlowHTTPServer(delay_s) as server:
        yield server


@contextlib.contextmanager
def refused_port() -> Iterator[Endpoint]:
    """A 127.0.0.1 port where every connect is refused.

    The port stays bound (without ``listen``) for the duration, so the kernel answers RST
    and no other process can start listening there meanwhile.
    """
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.bind((LOOPBACK, 0))
    try:
        yield Endpoint(LOOPBACK, reservation.getsockname()[1])
    finally:
        reservation.close()


@dataclass
class DripEndpoint(Endpoint):
    """A slow-drip server: ``requests`` counts the requests it read, ``closed`` the
    connections the client gave up on while it was still dripping."""

    requests: int = 0
    closed: int = 0


@contextlib.contextmanager
def slow_drip_server(interval_s: float = 0.2, phase: str = "body") -> Iterator[DripEndpoint]:
    """An HTTP server that reads each request, then answers one byte every ``interval_s``
    and never finishes: each read of the client returns within any read timeout above
    ``interval_s``, so only a deadline on the whole request ends it.

    ``phase="head"`` drips the status line itself (the client never learns the status);
    ``phase="body"`` sends a complete ``200`` head announcing 1 MB and drips the body.
    """
    if phase not in ("head", "body"):
        raise ValueError(phase)
    stopping = threading.Event()
    lock = threading.Lock()
    endpoint = DripEndpoint(LOOPBACK, 0)  # the port once listening

    def read_request(connection: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def drip(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                if not read_request(connection):
                    return
                with lock:
                    endpoint.requests += 1
                if phase == "body":
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                        b"Content-Length: 1000000\r\n\r\n"
                    )
                else:
                    connection.sendall(b"HTTP/1.1 200 ")
                while not stopping.wait(interval_s):
                    connection.sendall(b"K")
            except OSError:
                with lock:
                    endpoint.closed += 1

    def serve(connection: socket.socket) -> None:
        threading.Thread(target=drip, args=(connection,), daemon=True).start()

    with accepting(serve, stopping, name="drip-accept") as port:
        endpoint.port = port
        yield endpoint
