"""Faults on the agent side, each with the real thing: Azurite, sockets, signals, a full tmpfs."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

from nodeagent import runner
from nodeagent.blob import API_VERSION, AzureBlobStore, UploadTarget
from nodeagent.errors import DownloadError, UploadError, WallClockExceeded
from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptSpec, OutputFileSpec, ResourceFileSpec, TaskReport
from nodeagent.steps import PrepareDirs, RunCommandLine
from nodeagent.steps.base import RunDeps
from nodeagent.testing import FakeReporter, make_attempt_spec, make_context
from tests.support.servers import AzuriteServer


def fast_store(sleep: Callable[[float], None] = time.sleep, **overrides: float) -> AzureBlobStore:
    """A blob store with short, bounded retries."""
    values: dict[str, float] = {
        "attempts": 2,
        "backoff_seconds": 0.05,
        "timeout_seconds": 0.5,
        "upload_attempts": 3,
        "max_backoff_seconds": 0.2,
    }
    values.update(overrides)
    return AzureBlobStore(
        attempts=int(values["attempts"]),
        backoff_seconds=values["backoff_seconds"],
        timeout_seconds=values["timeout_seconds"],
        upload_attempts=int(values["upload_attempts"]),
        max_backoff_seconds=values["max_backoff_seconds"],
        sdk_retries=0,
        sleep=sleep,
    )


def run_attempt(root: Path, spec: AttemptSpec, store: AzureBlobStore) -> TaskReport:
    """Run one attempt through the real runner; the report it delivered."""
    reporter = FakeReporter()
    deps = RunDeps(blob=store, reporter=reporter, agent_path="/usr/bin:/bin", kill_grace=0.5)
    runner.run(spec, NodeLayout(root), deps)
    ((_, report),) = reporter.reports
    return report


def blob_service(azurite: AzuriteServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string, api_version=API_VERSION)


def container_with_sas(azurite: AzuriteServer, expiry: datetime) -> tuple[str, str]:
    """A fresh container; (name, container URL with a read/write/list SAS expiring at `expiry`)."""
    name = f"faults-{uuid.uuid4().hex[:10]}"
    with blob_service(azurite) as blobs:
        blobs.create_container(name)
    sas = generate_container_sas(
        account_name=azurite.account_name,
        container_name=name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True),
        expiry=expiry,
    )
    return name, f"{azurite.blob_endpoint}/{name}?{sas}"


class CountingHandler(BaseHTTPRequestHandler):
    """Answers 404 to everything and counts the requests."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_found_server() -> Iterator[str]:
    """Base URL of a local HTTP server answering 404."""
    CountingHandler.hits = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Base URL of a socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_resource_404_is_blob_not_found_and_not_retried(tmp_path: Path, not_found_server: str) -> None:
    # Given a resource file whose URL answers 404
    spec = make_attempt_spec(
        command_line="/bin/touch ran",
        resource_files=[ResourceFileSpec(http_url=f"{not_found_server}/in.txt?sig=SECRET", file_path="in.txt")],
    )
    # When the attempt runs
    report = run_attempt(tmp_path, spec, fast_store(attempts=3))
    # Then it is a pre-processing failure after one request, and the command never ran
    assert (report.outcome, report.exit_code) == ("preprocessing_error", None)
    assert report.failure is not None and report.failure.code == "BlobNotFound"
    assert CountingHandler.hits == 1
    assert "SECRET" not in report.failure.message


def test_silent_resource_url_times_out_within_a_bounded_time(tmp_path: Path, silent_server: str) -> None:
    # Given a resource URL that accepts the connection and never answers
    spec = make_attempt_spec(resource_files=[ResourceFileSpec(http_url=f"{silent_server}/x", file_path="x")])
    # When the attempt runs with a 0.5 s read timeout and 2 tries
    started = time.monotonic()
    report = run_attempt(tmp_path, spec, fast_store(attempts=2, timeout_seconds=0.5))
    elapsed = time.monotonic() - started
    # Then it ends as BlobDownloadTimedOut after roughly the two timeouts
    assert report.failure is not None and report.failure.code == "BlobDownloadTimedOut"
    assert report.outcome == "preprocessing_error"
    assert elapsed < 5.0


def test_expired_sas_on_a_blob_url_is_access_denied_and_redacted(tmp_path: Path, azurite: AzuriteServer) -> None:
    # Given a blob and a read SAS for it that expired an hour ago
    name, _ = container_with_sas(azurite, datetime.now(UTC) + timedelta(hours=1))
    with blob_service(azurite) as blobs:
        blobs.get_container_client(name).upload_blob("in.txt", b"data")
    sas = generate_blob_sas(
        account_name=azurite.account_name,
        container_name=name,
        blob_name="in.txt",
        account_key=azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) - timedelta(hours=1),
    )
    signature = sas.split("sig=")[1].split("&")[0]
    url = f"{azurite.blob_endpoint}/{name}/in.txt?{sas}"
    # When it is downloaded
    with pytest.raises(DownloadError) as caught:
        fast_store().download(ResourceFileSpec(http_url=url, file_path="in.txt"), tmp_path)
    # Then access is denied and the signature is not in the message
    assert caught.value.code == "BlobAccessDenied"
    assert "sig=REDACTED" in caught.value.message and signature not in caught.value.message


def test_expired_sas_on_a_container_is_access_denied_and_redacted(tmp_path: Path, azurite: AzuriteServer) -> None:
    _, url = container_with_sas(azurite, datetime.now(UTC) - timedelta(minutes=5))
    signature = url.split("sig=")[1].split("&")[0]
    with pytest.raises(DownloadError) as caught:
        fast_store().download(ResourceFileSpec(storage_container_url=url), tmp_path)
    assert caught.value.code == "BlobAccessDenied"
    assert signature not in caught.value.message


def test_expired_sas_on_upload_fails_at_once_without_retries(tmp_path: Path, azurite: AzuriteServer) -> None:
    # Given an output container whose SAS expired
    _, url = container_with_sas(azurite, datetime.now(UTC) - timedelta(minutes=5))
    signature = url.split("sig=")[1].split("&")[0]
    source = tmp_path / "result.txt"
    source.write_text("r")
    # When the file is uploaded with generous retries
    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        fast_store(upload_attempts=5, backoff_seconds=1.0, max_backoff_seconds=1.0).upload(
            source, UploadTarget(url, "result.txt")
        )
    # Then it fails at once (authentication is not retried), without the signature
    assert caught.value.code == "FileUploadFailed"
    assert time.monotonic() - started < 1.0
    assert signature not in caught.value.message


def ensure_running(azurite: AzuriteServer) -> None:
    """Start the session's Azurite again (same port and data) unless it runs."""
    if azurite.child is None or not azurite.child.alive():
        azurite.stop()
        azurite.start()


def test_storage_down_during_upload_fails_after_bounded_retries(tmp_path: Path, azurite: AzuriteServer) -> None:
    # Given an output container, then storage going down
    _, url = container_with_sas(azurite, datetime.now(UTC) + timedelta(hours=1))
    signature = url.split("sig=")[1].split("&")[0]
    source = tmp_path / "result.txt"
    source.write_text("r")
    azurite.stop()
    try:
        # When the upload is tried 3 times with short back-off
        started = time.monotonic()
        with pytest.raises(UploadError) as caught:
            fast_store(upload_attempts=3).upload(source, UploadTarget(url, "out/result.txt"))
        elapsed = time.monotonic() - started
    finally:
        ensure_running(azurite)
    # Then it gives up within the bounded window, naming the file, without the signature
    assert caught.value.code == "FileUploadFailed" and caught.value.outcome == "upload_error"
    assert "result.txt" in caught.value.message and signature not in caught.value.message
    assert caught.value.details["FilePath"] == str(source)
    assert elapsed < 10.0


def test_storage_back_within_the_retry_window_succeeds(tmp_path: Path, azurite: AzuriteServer) -> None:
    # Given an output container and storage that goes down
    name, url = container_with_sas(azurite, datetime.now(UTC) + timedelta(hours=1))
    source = tmp_path / "result.txt"
    source.write_text("made it")
    azurite.stop()
    waits: list[float] = []

    def back_off_then_restart(seconds: float) -> None:
        # Storage comes back (same port, same data) during the second back-off of the upload.
        waits.append(seconds)
        time.sleep(seconds)
        if len(waits) == 2:
            azurite.start()

    try:
        # When the upload retries with back-off
        store = fast_store(back_off_then_restart, upload_attempts=5, backoff_seconds=0.2, max_backoff_seconds=0.5)
        store.upload(source, UploadTarget(url, "result.txt"))
    finally:
        ensure_running(azurite)
    # Then the try after the restart succeeds and the blob is there
    assert len(waits) == 2
    with blob_service(azurite) as blobs:
        blob = blobs.get_blob_client(name, "result.txt").download_blob().readall()
    assert blob == b"made it"


def test_upload_failure_through_the_runner_is_a_file_upload_error(tmp_path: Path, azurite: AzuriteServer) -> None:
    # Given a task with an output file whose storage is down
    _, url = container_with_sas(azurite, datetime.now(UTC) + timedelta(hours=1))
    signature = url.split("sig=")[1].split("&")[0]
    spec = make_attempt_spec(
        command_line="/bin/sh -c 'echo r > result.txt'",
        output_files=[OutputFileSpec(file_pattern="result.txt", container_url=url)],
    )
    azurite.stop()
    try:
        report = run_attempt(tmp_path, spec, fast_store(upload_attempts=2))
    finally:
        ensure_running(azurite)
    # Then the task ran (exit 0) and failed with a file upload error logged to fileuploaderr.txt
    assert (report.outcome, report.exit_code) == ("upload_error", 0)
    assert report.failure is not None and report.failure.code == "FileUploadFailed"
    upload_err = NodeLayout(tmp_path).task_dirs("job-1", "task-1").upload_err.read_text()
    assert "result.txt" in upload_err and signature not in upload_err


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    # Given a command that ignores SIGTERM (inherited by its child)
    ctx = make_context(
        tmp_path,
        make_attempt_spec(command_line="/bin/sh -c 'trap \"\" TERM; /bin/sleep 30'", max_wall_clock_seconds=0.3),
        RunDeps(blob=fast_store(), reporter=FakeReporter(), agent_path="/usr/bin:/bin", kill_grace=0.5),
    )
    PrepareDirs().run(ctx)
    # When its wall clock expires
    started = time.monotonic()
    with pytest.raises(WallClockExceeded):
        RunCommandLine().run(ctx)
    elapsed = time.monotonic() - started
    # Then SIGKILL ended it once the grace had passed
    assert ctx.exit_code == 128 + 9
    assert 0.7 <= elapsed < 5.0


@pytest.fixture
def full_disk_root(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted as a node root (root only), unmounted afterwards."""
    root = tmp_path / "node"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_disk_full_while_the_task_writes_is_disk_full(full_disk_root: Path) -> None:
    # Given a node root on a 1 MiB filesystem and a task writing 2 MB into its working directory
    fill = make_attempt_spec(command_line="/bin/sh -c 'head -c 2000000 /dev/zero > big.bin'")
    # When it runs
    report = run_attempt(full_disk_root, fill, fast_store())
    # Then it fails with DiskFull after running
    assert report.failure is not None and report.failure.code == "DiskFull"
    assert report.outcome == "exited" and report.exit_code not in (None, 0)


def test_the_agent_keeps_working_after_a_full_disk(full_disk_root: Path) -> None:
    # Given a disk filled by one attempt
    fill = make_attempt_spec(command_line="/bin/sh -c 'head -c 2000000 /dev/zero > big'")
    run_attempt(full_disk_root, fill, fast_store())
    # When the next attempt writes its stdout on the full disk
    echo = make_attempt_spec(attempt_id="attempt-2", task_id="task-2", command_line="/bin/sh -c 'echo hello'")
    second = run_attempt(full_disk_root, echo, fast_store())
    # And, once space is freed, another one runs
    (NodeLayout(full_disk_root).task_dirs("job-1", "task-1").wd / "big").unlink()
    third = run_attempt(full_disk_root, echo.model_copy(update={"attempt_id": "attempt-3"}), fast_store())
    # Then the second fails with DiskFull and the third succeeds
    assert second.failure is not None and second.failure.code == "DiskFull"
    assert (third.outcome, third.exit_code, third.failure) == ("exited", 0, None)


def test_disk_full_for_the_upload_log_is_disk_full(full_disk_root: Path) -> None:
    # Given a task that exits 0 after filling the disk, with an output pattern that matches nothing
    spec = make_attempt_spec(
        command_line="/bin/sh -c 'head -c 2000000 /dev/zero > big; exit 0'",
        output_files=[OutputFileSpec(file_pattern="nothing*.txt", container_url="http://127.0.0.1:1/c")],
    )
    # When the upload log line cannot be written
    report = run_attempt(full_disk_root, spec, fast_store())
    # Then the attempt fails with DiskFull as an upload error
    assert report.failure is not None and report.failure.code == "DiskFull"
    assert (report.outcome, report.exit_code) == ("upload_error", 0)


def test_disk_full_during_a_download_is_a_preprocessing_disk_full(full_disk_root: Path, azurite: AzuriteServer) -> None:
    # Given a 2 MB resource blob and a node root of 1 MiB
    name, url = container_with_sas(azurite, datetime.now(UTC) + timedelta(hours=1))
    with blob_service(azurite) as blobs:
        blobs.get_container_client(name).upload_blob("big.bin", b"x" * 2_000_000)
    spec = make_attempt_spec(resource_files=[ResourceFileSpec(storage_container_url=url)])
    # When the attempt downloads it
    report = run_attempt(full_disk_root, spec, fast_store())
    # Then it is a pre-processing DiskFull and no partial file is left
    assert report.failure is not None and report.failure.code == "DiskFull"
    assert (report.outcome, report.exit_code) == ("preprocessing_error", None)
    assert list(NodeLayout(full_disk_root).task_dirs("job-1", "task-1").wd.iterdir()) == []
