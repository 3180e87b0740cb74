from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent import messages
from nodeagent.client import signed_headers
from nodeagent.files import ByteRange, FileServer, Unsatisfiable, parse_range

SECRET = "node-secret"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    (node / "workitems" / "j" / "job-1" / "t").mkdir(parents=True)
    (node / "shared").mkdir()
    (node / "workitems" / "j" / "job-1" / "t" / "stdout.txt").write_bytes(b"0123456789")
    return node


@pytest.fixture
def server(root: Path) -> Iterator[FileServer]:
    files = FileServer(root, SECRET)
    files.start()
    yield files
    files.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def fetch(
    server: FileServer,
    path: str,
    method: str = "GET",
    *,
    secret: str = SECRET,
    sign_as: str | None = None,
    headers: dict[str, str] | None = None,
    sign: bool = True,
    now: float | None = None,
    prefix: str = messages.FILE_SERVER_PREFIX,
) -> Answer:
    """One request to the file server, signed like the controller signs it."""
    target = prefix + path
    all_headers = dict(headers or {})
    if sign:
        all_headers.update(signed_headers(secret, sign_as or method, target.split("?")[0], b"", now=now))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, target, headers=all_headers)
        response = conn.getresponse()
        body = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


TASK_STDOUT = "/workitems/j/job-1/t/stdout.txt"


def test_signed_get_returns_the_file_with_headers(server: FileServer, root: Path) -> None:
    answer = fetch(server, TASK_STDOUT)
    assert answer.status == 200
    assert answer.body == b"0123456789"
    assert answer.header("Content-Length") == "10"
    assert answer.header("Last-Modified").endswith("GMT")
    mode = os.stat(root / TASK_STDOUT.lstrip("/")).st_mode & 0o7777
    assert answer.header(messages.FILE_MODE_HEADER) == f"{mode:04o}"
    assert answer.header(messages.CREATION_TIME_HEADER).endswith("GMT")


def test_unsigned_request_is_forbidden(server: FileServer) -> None:
    assert fetch(server, TASK_STDOUT, sign=False).status == 403


def test_wrong_secret_is_forbidden(server: FileServer) -> None:
    assert fetch(server, TASK_STDOUT, secret="other").status == 403


def test_signature_for_another_method_is_forbidden(server: FileServer) -> None:
    assert fetch(server, TASK_STDOUT, "HEAD", sign_as="GET").status == 403


def test_old_date_is_forbidden(server: FileServer) -> None:
    assert fetch(server, TASK_STDOUT, now=1_000_000_000.0).status == 403


def test_head_sends_headers_only(server: FileServer) -> None:
    answer = fetch(server, TASK_STDOUT, "HEAD")
    assert (answer.status, answer.body) == (200, b"")
    assert answer.header("Content-Length") == "10"


def test_range_returns_partial_content(server: FileServer) -> None:
    answer = fetch(server, TASK_STDOUT, headers={"Range": "bytes=2-5"})
    assert (answer.status, answer.body) == (206, b"2345")
    assert answer.header("Content-Range") == "bytes 2-5/10"


def test_unsatisfiable_range_is_416(server: FileServer) -> None:
    answer = fetch(server, TASK_STDOUT, headers={"Range": "bytes=20-"})
    assert answer.status == 416
    assert answer.header("Content-Range") == "bytes */10"


@pytest.mark.parametrize("path", ["/..%2F..%2Fetc%2Fpasswd", "/%2E%2E/outside.txt", "/%2Fetc%2Fpasswd"])
def test_paths_escaping_the_root_are_400(server: FileServer, root: Path, path: str) -> None:
    (root.parent / "outside.txt").write_text("secret")
    assert fetch(server, path).status == 400


def test_symlink_out_of_the_root_is_400(server: FileServer, root: Path) -> None:
    (root.parent / "secret.txt").write_text("secret")
    (root / "shared" / "link").symlink_to(root.parent / "secret.txt")
    assert fetch(server, "/shared/link").status == 400


def test_missing_file_is_404(server: FileServer) -> None:
    assert fetch(server, "/shared/nothing.txt").status == 404


def test_directory_is_marked(server: FileServer) -> None:
    answer = fetch(server, "/workitems/j")
    assert (answer.status, answer.body) == (200, b"")
    assert answer.header(messages.IS_DIRECTORY_HEADER) == "true"


def test_percent_encoded_names(server: FileServer, root: Path) -> None:
    (root / "shared" / "a b%.txt").write_text("spaced")
    answer = fetch(server, "/shared/a%20b%25.txt")
    assert (answer.status, answer.body) == (200, b"spaced")


def test_file_is_readable_while_being_written(server: FileServer, root: Path) -> None:
    # Given a file a task still holds open and appends to
    path = root / "workitems" / "j" / "job-1" / "t" / "stderr.txt"
    with path.open("ab") as writer:
        writer.write(b"first line\n")
        writer.flush()
        # When it is read twice while it grows
        first = fetch(server, "/workitems/j/job-1/t/stderr.txt").body
        writer.write(b"second line\n")
        writer.flush()
        second = fetch(server, "/workitems/j/job-1/t/stderr.txt").body
    # Then each read returns what was written so far
    assert first == b"first line\n"
    assert second == b"first line\nsecond line\n"


def test_large_file_is_streamed_completely(server: FileServer, root: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (root / "shared" / "big.bin").write_bytes(data)
    assert fetch(server, "/shared/big.bin").body == data


def test_other_paths_are_404(server: FileServer) -> None:
    assert fetch(server, "/elsewhere", prefix="").status == 404


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=5-", ByteRange(5, 9)),
        ("bytes=-3", ByteRange(7, 9)),
        ("bytes=8-100", ByteRange(8, 9)),
        ("bytes=1-2,4-5", None),
        ("items=1-2", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=5-2", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 10)


def listing(server: FileServer, path: str) -> list[messages.FileEntry]:
    """The entries a signed list request answers."""
    answer = fetch(server, path)
    assert answer.status == 200, answer.status
    assert answer.header("Content-Type") == "application/json"
    return messages.FileListing.model_validate_json(answer.body).entries


def test_list_names_direct_children_relative_to_the_root(server: FileServer, root: Path) -> None:
    # Given a task directory with a file and a subdirectory holding another file
    task = root / "workitems" / "j" / "job-1" / "t"
    (task / "wd").mkdir()
    (task / "wd" / "out.txt").write_text("abc")
    # When the task directory is listed without recursion
    entries = listing(server, "/workitems/j/job-1/t?list=1")
    # Then its direct children are named relative to the node root, directories marked
    assert [(e.path, e.is_directory, e.size) for e in entries] == [
        ("workitems/j/job-1/t/stdout.txt", False, 10),
        ("workitems/j/job-1/t/wd", True, 0),
    ]
    mode = os.stat(task / "stdout.txt").st_mode & 0o7777
    assert entries[0].mode == f"{mode:04o}"
    assert entries[0].modified.tzinfo is not None


def test_recursive_list_walks_the_tree(server: FileServer, root: Path) -> None:
    (root / "shared" / "a" / "b").mkdir(parents=True)
    (root / "shared" / "a" / "b" / "deep.txt").write_text("d")
    entries = listing(server, "/shared?list=1&recursive=true")
    assert [e.path for e in entries] == ["shared/a", "shared/a/b", "shared/a/b/deep.txt"]


def test_the_root_itself_can_be_listed(server: FileServer) -> None:
    assert [e.path for e in listing(server, "/?list=1")] == ["shared", "workitems"]
    assert [e.path for e in listing(server, "?list=1")] == ["shared", "workitems"]


def test_list_skips_symlinks_leaving_the_root_and_never_descends_links(server: FileServer, root: Path) -> None:
    # Given links out of the root, a link to a directory inside it, and a broken link
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (root / "shared" / "out-file").symlink_to(outside / "secret.txt")
    (root / "shared" / "out-dir").symlink_to(outside)
    (root / "shared" / "in-dir").symlink_to(root / "workitems")
    (root / "shared" / "broken").symlink_to(root / "nothing")
    # When the tree is listed recursively
    paths = [e.path for e in listing(server, "/shared?list=1&recursive=true")]
    # Then only the inside link is listed, and nothing below it
    assert paths == ["shared/in-dir"]


def test_list_of_a_file_is_409(server: FileServer) -> None:
    assert fetch(server, TASK_STDOUT + "?list=1").status == 409


def test_list_signature_covers_the_path_without_query(server: FileServer) -> None:
    answer = fetch(server, "/shared?list=1", sign=False, headers=signed_headers(SECRET, "GET", "/x", b""))
    assert answer.status == 403


def test_list_of_a_missing_directory_is_404(server: FileServer) -> None:
    assert fetch(server, "/shared/none?list=1").status == 404


def test_list_escaping_the_root_is_400(server: FileServer) -> None:
    assert fetch(server, "/..%2F?list=1").status == 400


def test_delete_removes_a_file(server: FileServer, root: Path) -> None:
    assert fetch(server, TASK_STDOUT, "DELETE").status == 200
    assert not (root / TASK_STDOUT.lstrip("/")).exists()


def test_delete_of_a_missing_path_is_404(server: FileServer) -> None:
    assert fetch(server, "/shared/none.txt", "DELETE").status == 404


def test_delete_of_a_non_empty_directory_needs_recursive(server: FileServer, root: Path) -> None:
    # Given a directory with a file in it
    task = root / "workitems" / "j" / "job-1" / "t"
    # When it is deleted without, then with recursive
    without = fetch(server, "/workitems/j/job-1/t", "DELETE").status
    present = task.exists()
    with_flag = fetch(server, "/workitems/j/job-1/t?recursive=true", "DELETE").status
    # Then the first is refused and the second removes the tree
    assert (without, present, with_flag) == (409, True, 200)
    assert not task.exists()


def test_delete_of_an_empty_directory(server: FileServer, root: Path) -> None:
    (root / "shared" / "empty").mkdir()
    assert fetch(server, "/shared/empty", "DELETE").status == 200
    assert not (root / "shared" / "empty").exists()


def test_delete_removes_a_symlink_not_its_target(server: FileServer, root: Path) -> None:
    target = root / "workitems" / "j" / "job-1" / "t" / "stdout.txt"
    (root / "shared" / "link").symlink_to(target)
    assert fetch(server, "/shared/link", "DELETE").status == 200
    assert not (root / "shared" / "link").is_symlink() and target.exists()


@pytest.mark.parametrize("path", ["/", "", "/..%2Fnode", "/shared%2F..%2F..", "/%2E%2E/outside.txt"])
def test_delete_of_the_root_or_outside_it_is_400(server: FileServer, root: Path, path: str) -> None:
    (root.parent / "outside.txt").write_text("keep")
    assert fetch(server, path, "DELETE").status == 400
    assert (root.parent / "outside.txt").exists() and root.exists()


def test_delete_through_a_symlinked_parent_leaving_the_root_is_400(server: FileServer, root: Path) -> None:
    outside = root.parent / "elsewhere"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep")
    (root / "shared" / "door").symlink_to(outside)
    assert fetch(server, "/shared/door/victim.txt", "DELETE").status == 400
    assert (outside / "victim.txt").exists()


def test_delete_needs_a_delete_signature(server: FileServer, root: Path) -> None:
    assert fetch(server, TASK_STDOUT, "DELETE", sign_as="GET").status == 403
    assert fetch(server, TASK_STDOUT, "DELETE", sign=False).status == 403
    assert (root / TASK_STDOUT.lstrip("/")).exists()
