"""The fan-out's total deadline per request over TLS, against a real HTTPS slow-drip sink:
the cut reaches the socket under the TLS layer, and the sink's own CA bundle
(``OTEL_EXPORTER_OTLP_CERTIFICATE``) is used even with ``REQUESTS_CA_BUNDLE`` set in the
environment (requests lets that variable override a session's ``verify``)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from telemetry.shared import OTLPHttpTarget
from telemetry.tracing import fanout
from tests.support.failing_sockets import accepting
from tests.support.net import LOOPBACK
from tests.tracing.test_fanout_sender import Counters


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sink.pem", directory / "sink.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_drip(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, CA bundle, what each connection ended with) of an HTTPS sink that reads a
    request, sends a 200 head announcing 100 KB, then one body byte every 0.1 s."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    stopping = threading.Event()
    outcomes: list[str] = []

    def drip(connection: socket.socket) -> None:
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed before the request")
                    data += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not stopping.wait(0.1):
                    tls.sendall(b"K")
                outcomes.append("stopped")
        except (OSError, ssl.SSLError) as error:
            outcomes.append(type(error).__name__)

    def serve(connection: socket.socket) -> None:
        threading.Thread(target=drip, args=(connection,), daemon=True).start()

    with accepting(serve, stopping, backlog=16, name="tls-drip-accept") as port:
        yield f"https://{LOOPBACK}:{port}", cert, outcomes


def test_a_tls_slow_drip_sink_is_cut_at_the_deadline_with_the_sinks_own_ca(
    tls_drip: tuple[str, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca_bundle, outcomes = tls_drip
    # The system bundle, which does not hold the sink's CA: it must not win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    counters = Counters()
    sender = fanout._Sender(
        OTLPHttpTarget("jaeger", f"{url}/v1/traces", verify=str(ca_bundle)),
        counters,
        max_queued_spans=100,
        timeout_s=1.0,
        compression="none",
    )
    try:
        started = time.monotonic()
        sender.submit(b"batch", 2)
        assert sender.flush(started + 20)
        elapsed = time.monotonic() - started
    finally:
        sender.stop(time.monotonic() + 2)
    # The handshake verified (the sink got the request and dripped), then the cut.
    assert sender.in_flight.cuts == 1
    assert counters.failed == [2]
    assert 0.9 <= elapsed < 2.5, elapsed
    deadline = time.monotonic() + 5
    while not outcomes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcomes and outcomes[0] != "stopped", outcomes
