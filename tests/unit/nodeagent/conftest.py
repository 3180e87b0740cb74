from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Route:
    """Answers of one path, used in order (the last one repeats)."""

    answers: list[tuple[int, bytes]]
    hits: int = 0


@dataclass
class LocalServer:
    """A local http.server whose answers tests choose per path."""

    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    stream_sizes: dict[str, int] = field(default_factory=dict)

    def add(self, path: str, *answers: tuple[int, bytes]) -> str:
        self.routes[path] = Route(list(answers))
        return self.base_url + path

    def add_stream(self, path: str, size: int) -> str:
        """A path answering `size` bytes of b'x', produced in chunks."""
        self.stream_sizes[path] = size
        return self.base_url + path


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in server.stream_sizes:
                self._stream(server.stream_sizes[path])
                return
            route = server.routes.get(path)
            status, body = (404, b"") if route is None else route.answers[min(route.hits, len(route.answers) - 1)]
            if route is not None:
                route.hits += 1
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, size: int) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"x" * 65536
            left = size
            while left > 0:
                piece = chunk[: min(left, len(chunk))]
                self.wfile.write(piece)
                left -= len(piece)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    """A local HTTP server on a free port for resource-file downloads."""
    state = LocalServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()
