"""The agent's transport against a real HTTP server on loopback."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nodeagent.transport import Call, PooledTransport, Unreachable


@dataclass
class Seen:
    """What the server received: (method, path, body, peer port) per request."""

    requests: list[tuple[str, str, bytes, int]] = field(default_factory=list)
    status: int = 200
    drop_after_answer: bool = False


def serve(seen: Seen) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.requests.append((self.command, self.path, body, self.client_address[1]))
            answer = b'{"ok": true}'
            self.send_response(seen.status)
            if seen.status == 302:
                self.send_header("location", "/elsewhere")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            if seen.drop_after_answer:
                self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def server() -> Iterator[tuple[Seen, int]]:
    seen = Seen()
    httpd = serve(seen)
    yield seen, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def transport() -> Iterator[PooledTransport]:
    pooled = PooledTransport()
    yield pooled
    pooled.close()


def call(port: int, path: str = "/nodes/n1/reports", timeout: float = 5.0) -> Call:
    headers = {"content-type": "application/json", "x-test": "1"}
    return Call("POST", path, f"http://127.0.0.1:{port}{path}", headers, b'{"reports": []}', timeout)


def test_calls_reach_the_server_and_share_one_connection(server: tuple[Seen, int], transport: PooledTransport) -> None:
    seen, port = server
    first = transport(call(port))
    second = transport(call(port, "/nodes/n1/heartbeat"))
    assert (first.status_code, first.content, first.is_success) == (200, b'{"ok": true}', True)
    assert second.is_success
    assert [(method, path, body) for method, path, body, _ in seen.requests] == [
        ("POST", "/nodes/n1/reports", b'{"reports": []}'),
        ("POST", "/nodes/n1/heartbeat", b'{"reports": []}'),
    ]
    assert seen.requests[0][3] == seen.requests[1][3], "the second call reused the kept-alive connection"


def test_an_idle_connection_the_server_closed_is_replaced(server: tuple[Seen, int], transport: PooledTransport) -> None:
    seen, port = server
    seen.drop_after_answer = True
    assert transport(call(port)).is_success
    time.sleep(0.2)  # the server closes the kept-alive connection while it is idle
    assert transport(call(port)).is_success
    assert len(seen.requests) == 2 and seen.requests[0][3] != seen.requests[1][3]


@pytest.mark.parametrize("status", [302, 409, 503])
def test_every_status_is_an_answer_and_redirects_are_not_followed(
    server: tuple[Seen, int], transport: PooledTransport, status: int
) -> None:
    seen, port = server
    seen.status = status
    answer = transport(call(port))
    assert answer.status_code == status and not answer.is_success
    assert len(seen.requests) == 1


def test_a_closed_port_is_unreachable(transport: PooledTransport) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(Unreachable):
        transport(call(port))


def test_a_server_that_never_answers_is_unreachable_after_the_call_timeout(transport: PooledTransport) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with pytest.raises(Unreachable):
            transport(call(listener.getsockname()[1], timeout=0.3))
    finally:
        listener.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchyard-test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_is_verified_against_the_trusted_certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a controller answering over TLS with a certificate of its own
    cert_path, key_path = self_signed(tmp_path)
    seen = Seen()
    httpd = serve(seen)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_path, key_path)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    secure = replace(call(port), url=f"https://127.0.0.1:{port}/nodes/n1/reports")
    try:
        # Then an agent that does not trust it gets no answer, and one that does (SSL_CERT_FILE) is answered
        untrusting = PooledTransport()
        with pytest.raises(Unreachable):
            untrusting(secure)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
        trusting = PooledTransport()
        assert trusting(secure).is_success
        assert trusting(secure).is_success
        assert len(seen.requests) == 2 and seen.requests[0][3] == seen.requests[1][3]
        untrusting.close()
        trusting.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
