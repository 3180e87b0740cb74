from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nodeagent import process


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


def require_root() -> None:
    """Skip a test that creates OS users unless the agent would be root; in CI such a skip is a failure."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("tests that create OS users must run as root in CI")
    pytest.skip("creating OS users needs root")


def remove_accounts(prefix: str) -> list[str]:
    """Delete every account and group whose name starts with `prefix`, with their homes; the accounts found."""
    found = [entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith(prefix)]
    for name in found:
        uid = pwd.getpwnam(name).pw_uid
        if uid not in (0, os.getuid()):
            process.kill_user_processes(uid)
        process.run_tool(["userdel", "--remove", name])
    for group in grp.getgrall():
        if group.gr_name.startswith(prefix):
            process.run_tool(["groupdel", group.gr_name])
    # Accounts the agent removed itself (it keeps homes) may have left one behind.
    for home in Path("/home").glob(f"{prefix}*"):
        shutil.rmtree(home, ignore_errors=True)
    return found


@pytest.fixture
def user_prefix() -> Iterator[str]:
    """A unique account-name prefix for one test (root only); every account and group with it is removed after."""
    require_root()
    prefix = "z" + secrets.token_hex(3)
    try:
        yield prefix
    finally:
        remove_accounts(prefix)
        leftovers = [entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith(prefix)]
        assert not leftovers, f"accounts left behind: {leftovers}"


@pytest.fixture
def node_root() -> Iterator[Path]:
    """A node root every user can traverse to (pytest's own temporary directories are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="batchyard-node-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_id(start: int = 42000) -> int:
    """A number used neither as a uid nor as a gid on this host."""
    used = {entry.pw_uid for entry in pwd.getpwall()} | {group.gr_gid for group in grp.getgrall()}
    candidate = start + secrets.randbelow(10000)
    while candidate in used:
        candidate += 1
    return candidate
