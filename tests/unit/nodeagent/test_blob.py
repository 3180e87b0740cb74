from __future__ import annotations

import stat
import tracemalloc
from pathlib import Path

import pytest

from nodeagent.blob import AzureBlobStore, UploadTarget, content_settings, should_upload
from nodeagent.errors import DownloadError, UploadError
from nodeagent.messages import ResourceFileSpec, UploadHeader

from .conftest import LocalServer


def store() -> AzureBlobStore:
    return AzureBlobStore(attempts=3, backoff_seconds=0.0, timeout_seconds=5.0, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("condition", "exit_code", "expected"),
    [
        ("tasksuccess", 0, True),
        ("tasksuccess", 1, False),
        ("tasksuccess", None, False),
        ("taskfailure", 0, False),
        ("taskfailure", 2, True),
        ("taskfailure", None, True),
        ("taskcompletion", 0, True),
        ("taskcompletion", 9, True),
        ("taskcompletion", None, True),
    ],
)
def test_should_upload(condition: str, exit_code: int | None, expected: bool) -> None:
    assert should_upload(condition, exit_code) is expected  # type: ignore[arg-type]


def test_http_download_writes_the_file(tmp_path: Path, local_server: LocalServer) -> None:
    url = local_server.add("/data/in.txt", (200, b"hello"))
    paths = store().download(ResourceFileSpec(http_url=url, file_path="inputs/in.txt"), tmp_path)
    assert paths == [tmp_path / "inputs" / "in.txt"]
    assert paths[0].read_bytes() == b"hello"
    assert [p.name for p in (tmp_path / "inputs").iterdir()] == ["in.txt"]


def test_http_download_streams_without_holding_the_file(tmp_path: Path, local_server: LocalServer) -> None:
    # Given a 32 MiB resource
    size = 32 * 1024 * 1024
    url = local_server.add_stream("/big.bin", size)
    # When it is downloaded while memory is traced
    tracemalloc.start()
    try:
        store().download(ResourceFileSpec(http_url=url, file_path="big.bin"), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is complete on disk and never was whole in memory
    assert (tmp_path / "big.bin").stat().st_size == size
    assert peak < 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("status", "code"), [(404, "BlobNotFound"), (403, "BlobAccessDenied"), (400, "BlobDownloadMiscError")]
)
def test_http_errors_map_to_azure_codes_without_retry(
    tmp_path: Path, local_server: LocalServer, status: int, code: str
) -> None:
    url = local_server.add("/x", (status, b"no"))
    with pytest.raises(DownloadError) as caught:
        store().download(ResourceFileSpec(http_url=url + "?sv=1&sig=SECRETSIG", file_path="x"), tmp_path)
    assert caught.value.code == code
    assert caught.value.outcome == "preprocessing_error"
    assert "SECRETSIG" not in caught.value.message
    assert local_server.routes["/x"].hits == 1


def test_server_errors_are_retried_then_succeed(tmp_path: Path, local_server: LocalServer) -> None:
    url = local_server.add("/flaky", (500, b""), (503, b""), (200, b"finally"))
    store().download(ResourceFileSpec(http_url=url, file_path="f.txt"), tmp_path)
    assert (tmp_path / "f.txt").read_bytes() == b"finally"
    assert local_server.routes["/flaky"].hits == 3


def test_retries_are_bounded(tmp_path: Path, local_server: LocalServer) -> None:
    url = local_server.add("/down", (500, b""))
    with pytest.raises(DownloadError) as caught:
        store().download(ResourceFileSpec(http_url=url, file_path="f.txt"), tmp_path)
    assert caught.value.code == "BlobDownloadMiscError"
    assert local_server.routes["/down"].hits == 3
    assert not (tmp_path / "f.txt").exists()


def test_connection_refused_is_a_misc_error(tmp_path: Path, local_server: LocalServer) -> None:
    url = "http://127.0.0.1:1/nothing"
    with pytest.raises(DownloadError) as caught:
        store().download(ResourceFileSpec(http_url=url, file_path="f.txt"), tmp_path)
    assert caught.value.code == "BlobDownloadMiscError"


@pytest.mark.parametrize("file_path", ["../escape.txt", "/etc/passwd", "a/../../b"])
def test_file_path_escaping_the_working_directory_is_refused(
    tmp_path: Path, local_server: LocalServer, file_path: str
) -> None:
    url = local_server.add("/x", (200, b"data"))
    with pytest.raises(DownloadError) as caught:
        store().download(ResourceFileSpec(http_url=url, file_path=file_path), tmp_path / "wd")
    assert caught.value.code == "ResourceFileWriteFailed"
    assert local_server.routes["/x"].hits == 0


def test_file_name_defaults_to_the_url_name(tmp_path: Path, local_server: LocalServer) -> None:
    url = local_server.add("/dir/name%20with%20space.txt", (200, b"x"))
    paths = store().download(ResourceFileSpec(http_url=url), tmp_path)
    assert paths == [tmp_path / "name with space.txt"]


def test_auto_storage_is_reported_as_unsupported(tmp_path: Path) -> None:
    with pytest.raises(DownloadError):
        store().download(ResourceFileSpec(auto_storage_container_name="c"), tmp_path)


def test_upload_failure_names_the_file_and_redacts_the_signature(tmp_path: Path) -> None:
    # Given a container URL where nothing listens
    source = tmp_path / "result.txt"
    source.write_text("r")
    target = UploadTarget(container_url="http://127.0.0.1:1/acct/out?sv=1&sig=TOPSECRET", blob_name="r.txt")
    # When the upload fails
    with pytest.raises(UploadError) as caught:
        AzureBlobStore(sdk_retries=0).upload(source, target)
    # Then the message names the file, and not the signature
    assert caught.value.code == "FileUploadFailed"
    assert caught.value.outcome == "upload_error"
    assert "result.txt" in caught.value.message
    assert "TOPSECRET" not in caught.value.message


def test_upload_headers_map_to_content_settings_and_metadata() -> None:
    headers = [
        UploadHeader(name="Content-Type", value="text/plain"),
        UploadHeader(name="x-ms-meta-owner", value="me"),
        UploadHeader(name="Cache-Control", value="no-cache"),
        UploadHeader(name="X-Unknown", value="1"),
    ]
    settings, metadata = content_settings(headers)
    assert settings.content_type == "text/plain"
    assert settings.cache_control == "no-cache"
    assert metadata == {"owner": "me"}


def test_default_permissions_untouched_by_store(tmp_path: Path, local_server: LocalServer) -> None:
    url = local_server.add("/m", (200, b"x"))
    (path,) = store().download(ResourceFileSpec(http_url=url, file_path="m"), tmp_path)
    assert stat.S_ISREG(path.stat().st_mode)
