"""The agent's transport against a real HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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


def call(port: int, path: str = "/nodes/n1/reports", timeout: float = 5.0) -> Call:
    headers = {"content-type": "application/json", "x-test": "1"}
    return Call("POST", path, f"http://127.0.0.1:{port}{path}", headers, b'{"reports": []}', timeout)


def test_calls_reach_the_server_and_share_one_connection(server: tuple[Seen, int]) -> None:
    seen, port = server
    transport = PooledTransport()
    first = transport(call(port))
    second = transport(call(port, "/nodes/n1/heartbeat"))
    assert (first.status_code, first.content, first.is_success) == (200, b'{"ok": true}', True)
    assert second.is_success
    assert [(method, path, body) for method, path, body, _ in seen.requests] == [
        ("POST", "/nodes/n1/reports", b'{"reports": []}'),
        ("POST", "/nodes/n1/heartbeat", b'{"reports": []}'),
    ]
    assert seen.requests[0][3] == seen.requests[1][3], "the second call reused the kept-alive connection"
    transport.close()


def test_a_connection_the_server_closed_is_replaced(server: tuple[Seen, int]) -> None:
    seen, port = server
    seen.drop_after_answer = True
    transport = PooledTransport()
    assert transport(call(port)).is_success
    assert transport(call(port)).is_success
    assert len(seen.requests) == 2 and seen.requests[0][3] != seen.requests[1][3]
    transport.close()


@pytest.mark.parametrize("status", [302, 409, 503])
def test_every_status_is_an_answer_and_redirects_are_not_followed(server: tuple[Seen, int], status: int) -> None:
    seen, port = server
    seen.status = status
    answer = PooledTransport()(call(port))
    assert answer.status_code == status and not answer.is_success
    assert len(seen.requests) == 1


def test_a_closed_port_is_unreachable() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(Unreachable):
        PooledTransport()(call(port))


def test_a_server_that_never_answers_is_unreachable_after_the_call_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        with pytest.raises(Unreachable):
            PooledTransport()(call(listener.getsockname()[1], timeout=0.3))
    finally:
        listener.close()
