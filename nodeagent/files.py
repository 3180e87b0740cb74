"""The node's file server: signed GET/HEAD/DELETE of files under the node root, readable while tasks write them.

`GET {FILE_SERVER_PREFIX}/<path relative to the node root, percent-encoded>`
answers 200 (or 206 for a byte range) with the file streamed in chunks, 200 with
`x-batchyard-is-directory: true` for a directory, 400 for a path that leaves the
root, 403 without a valid signature, 404 when missing.

`GET .../<dir>?list=1[&recursive=true]` answers 200 with a JSON `FileListing` of
the entries below the directory (`GET {FILE_SERVER_PREFIX}/?list=1` lists the
root); symbolic links are never followed out of the root nor descended into.
`DELETE .../<path>[?recursive=true]` removes a file, a symbolic link (not its
target) or a directory: 200, 404 when missing, 409 for a non-empty directory
without `recursive`, 400 for the root itself or a path that leaves it.
The signature always covers the path without its query string.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import os
import posixpath
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote

from nodeagent import messages

log = logging.getLogger(__name__)

"""Header set to `true` when the requested path is a directory."""

CHUNK_BYTES = 64 * 1024
"""Size of the pieces a file is sent in."""

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class BadPath(Exception):
    """The requested path is malformed or leaves the node root."""


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range of a file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    """The Range header asks for bytes the file does not have."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a `Range` header asks for; None to send the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # Unsupported forms (several ranges, other units) are ignored, as RFC 9110 allows.
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise Unsatisfiable
    return ByteRange(start, end)


def verify_signature(
    secret: str, method: str, path: str, date: str | None, signature: str | None, now: float | None = None
) -> bool:
    """True when a request carries a valid node signature with a date inside the allowed skew."""
    if not secret or not date or not signature:
        return False
    try:
        when = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - when) > messages.MAX_CLOCK_SKEW_SECONDS:
        return False
    expected = messages.node_signature(secret, method, path, date, b"")
    return messages.signatures_match(expected, signature)


def request_relative_path(raw_path: str) -> str:
    """The decoded path below the node root that a request path names; BadPath when it is malformed."""
    rest = raw_path[len(messages.FILE_SERVER_PREFIX) :]
    if rest and not rest.startswith("/"):
        raise BadPath(raw_path)
    relative = unquote(rest.lstrip("/"), errors="strict")
    if "\0" in relative:
        raise BadPath(raw_path)
    return relative


def resolve_request_path(root: Path, raw_path: str) -> Path:
    """The file a request path names under `root`; BadPath when it is malformed or escapes the root."""
    relative = request_relative_path(raw_path)
    real_root = root.resolve()
    target = Path(os.path.realpath(real_root / relative))
    if not target.is_relative_to(real_root):
        raise BadPath(raw_path)
    return target


def resolve_delete_path(root: Path, raw_path: str) -> Path:
    """The entry a DELETE names: its parent resolved inside `root`, its last segment not followed."""
    relative = posixpath.normpath(request_relative_path(raw_path) or ".")
    if relative in (".", "..") or relative.startswith(("../", "/")):
        raise BadPath(raw_path)
    real_root = root.resolve()
    parent = Path(os.path.realpath(real_root / posixpath.dirname(relative)))
    if not parent.is_relative_to(real_root):
        raise BadPath(raw_path)
    return parent / posixpath.basename(relative)


def status_for(error: Exception) -> HTTPStatus:
    """The answer to a path that could not be served: 400 outside the root, 404 missing, 409 not empty, else 403."""
    if isinstance(error, (BadPath, UnicodeDecodeError)):
        return HTTPStatus.BAD_REQUEST
    if isinstance(error, FileNotFoundError):
        return HTTPStatus.NOT_FOUND
    if isinstance(error, NotEmpty):
        return HTTPStatus.CONFLICT
    return HTTPStatus.FORBIDDEN


def query_flag(query: str, name: str) -> bool:
    """Whether the query string sets flag `name` to `1` or `true`."""
    values = parse_qs(query, keep_blank_values=True).get(name, [])
    return any(value.lower() in ("1", "true") for value in values)


def _utc(timestamp: float) -> datetime:
    """A POSIX timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp, UTC)


def file_entry(path: Path, info: os.stat_result, real_root: Path) -> messages.FileEntry:
    """The listing entry of `path` (inside `real_root`) with the metadata in `info`."""
    is_directory = stat.S_ISDIR(info.st_mode)
    return messages.FileEntry(
        path=path.relative_to(real_root).as_posix(),
        is_directory=is_directory,
        size=0 if is_directory else info.st_size,
        modified=_utc(info.st_mtime),
        created=_utc(info.st_ctime),
        mode=f"{stat.S_IMODE(info.st_mode):04o}",
    )


def _entry_stat(entry: os.DirEntry[str], real_root: Path) -> os.stat_result | None:
    """Metadata of a directory entry; a symbolic link counts only when its target stays inside the root."""
    try:
        if not entry.is_symlink():
            return entry.stat(follow_symlinks=False)
        if not Path(os.path.realpath(entry.path)).is_relative_to(real_root):
            return None
        return entry.stat(follow_symlinks=True)
    except OSError:
        return None  # Gone while listing, a broken link, or unreadable: not listed.


def iter_entries(directory: Path, real_root: Path, recursive: bool) -> Iterator[messages.FileEntry]:
    """Entries below `directory`, sorted by name; recursion never descends through a symbolic link."""
    try:
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda item: item.name)
    except OSError as exc:
        log.debug("file server: cannot list %s: %s", directory, exc)
        return
    for child in children:
        info = _entry_stat(child, real_root)
        if info is None:
            continue
        yield file_entry(Path(child.path), info, real_root)
        if recursive and stat.S_ISDIR(info.st_mode) and not child.is_symlink():
            yield from iter_entries(Path(child.path), real_root, recursive)


def list_directory(root: Path, directory: Path, recursive: bool) -> messages.FileListing:
    """The FileListing of `directory` (already resolved inside `root`)."""
    real_root = root.resolve()
    return messages.FileListing(entries=list(iter_entries(directory, real_root, recursive)))


class NotEmpty(Exception):
    """A directory to delete has entries and the request was not recursive."""


def delete_path(target: Path, recursive: bool) -> None:
    """Remove a file, a symbolic link or a directory (its whole tree when `recursive`)."""
    info = target.lstat()
    if not stat.S_ISDIR(info.st_mode):
        target.unlink()
        return
    if recursive:
        shutil.rmtree(target)
        return
    try:
        target.rmdir()
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise NotEmpty(str(target)) from exc
        raise


def http_date(timestamp: float) -> str:
    """RFC-1123 date of a POSIX timestamp."""
    return email.utils.formatdate(timestamp, usegmt=True)


class FileRequestHandler(BaseHTTPRequestHandler):
    """Serves GET and HEAD of files under the server's node root."""

    server: FileServer.HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # Idle keep-alive connections are closed instead of holding a thread forever.

    def do_GET(self) -> None:
        """Send a file, a byte range of it, or a directory marker."""
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        """Send the headers a GET would send."""
        self._serve(send_body=False)

    def do_DELETE(self) -> None:
        """Delete a file or a directory."""
        raw_path, _, query = self.path.partition("?")
        if not self._admitted(raw_path):
            return
        try:
            delete_path(resolve_delete_path(self.server.root, raw_path), query_flag(query, messages.RECURSIVE_QUERY))
        except (BadPath, UnicodeDecodeError, NotEmpty, OSError) as exc:
            status = status_for(exc)
            if status == HTTPStatus.FORBIDDEN:
                log.warning("file server: cannot delete %s: %s", raw_path, exc)
            self._empty(status)
            return
        self._empty(HTTPStatus.OK)

    def log_message(self, format: str, *args: object) -> None:
        """Access log lines go to the debug log, not stderr."""
        log.debug("file server: " + format, *args)

    def _admitted(self, raw_path: str) -> bool:
        """Whether the path is the file server's and the request is signed; answers 404 or 403 when not."""
        if raw_path != messages.FILE_SERVER_PREFIX and not raw_path.startswith(messages.FILE_SERVER_PREFIX + "/"):
            self._empty(HTTPStatus.NOT_FOUND)
            return False
        if not self._signed(raw_path):
            self._empty(HTTPStatus.FORBIDDEN)
            return False
        return True

    def _serve(self, send_body: bool) -> None:
        """Check the path and the signature, then answer."""
        raw_path, _, query = self.path.partition("?")
        if not self._admitted(raw_path):
            return
        try:
            target = resolve_request_path(self.server.root, raw_path)
            info = target.stat()
        except (BadPath, UnicodeDecodeError, OSError) as exc:
            self._empty(status_for(exc))
            return
        listing = query_flag(query, messages.LIST_QUERY)
        if stat.S_ISDIR(info.st_mode) and listing:
            self._send_listing(target, query_flag(query, messages.RECURSIVE_QUERY), send_body)
        elif stat.S_ISDIR(info.st_mode):
            self._empty(HTTPStatus.OK, {messages.IS_DIRECTORY_HEADER: "true", **_file_headers(info)})
        elif listing:
            self._empty(HTTPStatus.CONFLICT)
        else:
            self._send_file(target, send_body)

    def _send_listing(self, directory: Path, recursive: bool, send_body: bool) -> None:
        """Answer with the JSON FileListing of `directory`."""
        body = list_directory(self.server.root, directory, recursive).model_dump_json().encode()
        self._start(HTTPStatus.OK, len(body), {"Content-Type": "application/json"})
        if send_body:
            self.wfile.write(body)

    def _signed(self, raw_path: str) -> bool:
        """Whether the request carries a valid signature for its method and path."""
        return verify_signature(
            self.server.secret,
            self.command,
            raw_path,
            self.headers.get(messages.DATE_HEADER),
            self.headers.get(messages.SIGNATURE_HEADER),
        )

    def _send_file(self, target: Path, send_body: bool) -> None:
        """Open the file and send it whole or the requested range."""
        try:
            handle = target.open("rb")
        except OSError:
            self._empty(HTTPStatus.FORBIDDEN)
            return
        with handle:
            info = os.fstat(handle.fileno())
            size = info.st_size
            try:
                byte_range = parse_range(self.headers.get("Range"), size)
            except Unsatisfiable:
                self._empty(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
                return
            chosen = byte_range or ByteRange(0, size - 1)
            headers = {**_file_headers(info), "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            if byte_range is not None:
                headers["Content-Range"] = f"bytes {chosen.start}-{chosen.end}/{size}"
            status = HTTPStatus.PARTIAL_CONTENT if byte_range is not None else HTTPStatus.OK
            self._start(status, max(chosen.length, 0), headers)
            if send_body:
                self._copy(handle, chosen)

    def _copy(self, handle: BinaryIO, byte_range: ByteRange) -> None:
        """Stream `byte_range` of the file in chunks."""
        handle.seek(byte_range.start)
        left = byte_range.length
        while left > 0:
            chunk = handle.read(min(CHUNK_BYTES, left))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)

    def _empty(self, status: HTTPStatus, headers: dict[str, str] | None = None) -> None:
        """Answer with no body."""
        self._start(status, 0, headers or {})

    def _start(self, status: HTTPStatus, length: int, headers: dict[str, str]) -> None:
        """Send the status line and headers."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()


def _file_headers(info: os.stat_result) -> dict[str, str]:
    """Last-Modified, mode and creation-time headers of a file or directory."""
    return {
        "Last-Modified": http_date(info.st_mtime),
        messages.FILE_MODE_HEADER: f"{stat.S_IMODE(info.st_mode):04o}",
        messages.CREATION_TIME_HEADER: http_date(info.st_ctime),
    }


class FileServer:
    """A ThreadingHTTPServer over the node root, run in a daemon thread."""

    class HTTPServer(ThreadingHTTPServer):
        """The HTTP server, carrying the node root and the secret for its handlers."""

        daemon_threads = True
        root: Path
        secret: str

    def __init__(self, root: Path, secret: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = FileServer.HTTPServer((host, port), FileRequestHandler)
        self._server.root = root
        self._server.secret = secret
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def url(self, advertise_host: str) -> str:
        """Base URL other hosts reach this server at."""
        return f"http://{advertise_host}:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="file-server", daemon=True
            )
            self._thread.start()
            log.info("file server listening on port %s", self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
