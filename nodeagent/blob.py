"""Resource-file downloads and output-file uploads; the only importer of `azure.storage.blob`."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, ContentSettings, ExponentialRetry

from nodeagent.diskspace import disk_full, is_enospc
from nodeagent.errors import DownloadError, UploadError
from nodeagent.layout import PathEscapeError, safe_join
from nodeagent.messages import ResourceFileSpec, UploadCondition, UploadHeader, redact

log = logging.getLogger(__name__)

API_VERSION = "2025-11-05"
"""Blob service version the clients speak: the newest one Azurite 3.35 accepts."""

CHUNK_BYTES = 1 << 20
"""Size of the pieces a download is streamed to disk in."""

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long a connection to blob storage or a resource URL may take to open."""

DOWNLOAD_TIMEOUT_SECONDS = 60.0
"""How long a download may go without receiving a byte before the try counts as timed out."""

UPLOAD_ATTEMPTS = 5
"""Tries of one output file upload while storage is unreachable or answers 5xx."""

MAX_BACKOFF_SECONDS = 30.0
"""Longest wait between two tries of a download or an upload."""

_CONTENT_SETTINGS = {
    "content-type": "content_type",
    "x-ms-blob-content-type": "content_type",
    "content-encoding": "content_encoding",
    "x-ms-blob-content-encoding": "content_encoding",
    "content-language": "content_language",
    "x-ms-blob-content-language": "content_language",
    "content-disposition": "content_disposition",
    "x-ms-blob-content-disposition": "content_disposition",
    "cache-control": "cache_control",
    "x-ms-blob-cache-control": "cache_control",
}


@dataclass(frozen=True)
class UploadTarget:
    """Where one output file goes: a blob in a container (SAS URL), with Put Blob headers."""

    container_url: str
    blob_name: str
    headers: tuple[UploadHeader, ...] = field(default_factory=tuple)


class BlobStore(Protocol):
    """Downloads resource files and uploads output files."""

    def download(self, source: ResourceFileSpec, wd: Path) -> list[Path]:
        """Place the file(s) of `source` under the working directory `wd`; the paths written."""

    def upload(self, path: Path, target: UploadTarget) -> None:
        """Upload the local file `path` to `target`."""


def should_upload(condition: UploadCondition, exit_code: int | None) -> bool:
    """Whether an output file with `condition` is uploaded after a task ended with `exit_code`."""
    if condition == "tasksuccess":
        return exit_code == 0
    if condition == "taskfailure":
        return exit_code != 0
    return True


class _Transient(Exception):
    """A download failure worth retrying."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class AzureBlobStore:
    """BlobStore over plain HTTP(S) for `httpUrl` and azure-storage-blob for containers."""

    def __init__(
        self,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        sdk_retries: int = 3,
        upload_attempts: int = UPLOAD_ATTEMPTS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self._attempts = max(1, attempts)
        self._upload_attempts = max(1, upload_attempts)
        self._sdk_retries = sdk_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._timeout = timeout_seconds
        self._session = session or requests.Session()
        self._sleep = sleep

    def _delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (exponential, capped)."""
        return float(min(self._backoff * 2 ** (attempt - 1), self._max_backoff))

    def download(self, source: ResourceFileSpec, wd: Path) -> list[Path]:
        """Download an `httpUrl` file or every blob of a `storageContainerUrl` (under `blobPrefix`)."""
        if source.http_url:
            dest = _target(wd, source.file_path or _url_file_name(source.http_url))
            self.download_url(source.http_url, dest)
            return [dest]
        if source.storage_container_url:
            directory = _target(wd, source.file_path) if source.file_path else wd
            return self._download_container(source.storage_container_url, source.blob_prefix, directory)
        raise DownloadError("BlobDownloadMiscError", "autoStorageContainerName is not supported on this node")

    def download_url(self, url: str, dest: Path) -> None:
        """Stream `url` to `dest`, retrying connection errors and 5xx answers a bounded number of times."""
        for attempt in range(1, self._attempts + 1):
            try:
                self._fetch(url, dest)
                return
            except _Transient as exc:
                last = exc
                log.warning("download of %s failed (try %s/%s): %s", redact(url), attempt, self._attempts, exc)
                if attempt < self._attempts:
                    self._sleep(self._delay(attempt))
        code = "BlobDownloadTimedOut" if last.timed_out else "BlobDownloadMiscError"
        raise DownloadError(code, redact(f"downloading {url} failed: {last}"), details={"FilePath": dest.name})

    def _fetch(self, url: str, dest: Path) -> None:
        """One GET of `url` streamed to `dest`; raises _Transient or DownloadError."""
        try:
            with self._session.get(url, stream=True, timeout=(CONNECT_TIMEOUT_SECONDS, self._timeout)) as response:
                _check_status(url, response.status_code)
                _write_stream(dest, response.iter_content(CHUNK_BYTES))
        except requests.Timeout as exc:
            raise _Transient(redact(str(exc)), timed_out=True) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(redact(str(exc))) from exc

    def _download_container(self, container_url: str, prefix: str | None, directory: Path) -> list[Path]:
        """Download every blob under `prefix`, keeping its folder structure under `directory`."""
        written: list[Path] = []
        try:
            container = self._container(container_url)
            with container:
                for blob in container.list_blobs(name_starts_with=prefix or None):
                    if blob.name.endswith("/"):
                        continue
                    dest = _target(directory, blob.name)
                    _write_stream(dest, container.download_blob(blob.name).chunks())
                    written.append(dest)
        except AzureError as exc:
            raise _download_error(container_url, exc) from exc
        return written

    def _container(self, container_url: str) -> ContainerClient:
        """A container client for a (SAS) container URL, pinned to API_VERSION, with bounded retries."""
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=self._sdk_retries)
        return ContainerClient.from_container_url(
            container_url,
            api_version=API_VERSION,
            retry_policy=retry,
            connection_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=self._timeout,
        )

    def upload(self, path: Path, target: UploadTarget) -> None:
        """Upload `path` as blob `target.blob_name`, retrying unreachable storage and 5xx a bounded number of times."""
        for attempt in range(1, self._upload_attempts + 1):
            try:
                self._upload_once(path, target)
                return
            except AzureError as exc:
                if attempt == self._upload_attempts or not _transient_storage_error(exc):
                    raise _upload_error(path, target, exc) from exc
                log.warning(
                    "upload of %s failed (try %s/%s): %s", path.name, attempt, self._upload_attempts, redact(str(exc))
                )
                self._sleep(self._delay(attempt))
            except OSError as exc:
                raise _upload_error(path, target, exc) from exc

    def _upload_once(self, path: Path, target: UploadTarget) -> None:
        """One Put Blob of `path` (the SDK's own retries aside)."""
        settings, metadata = content_settings(target.headers)
        container = self._container(target.container_url)
        with container, path.open("rb") as stream:
            container.upload_blob(
                target.blob_name, stream, overwrite=True, content_settings=settings, metadata=metadata or None
            )


def _transient_storage_error(exc: AzureError) -> bool:
    """Whether an upload failure is worth another try: storage unreachable, or a 5xx/408/429 answer."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return status is not None and (status >= 500 or status in (408, 429))


def _upload_error(path: Path, target: UploadTarget, exc: Exception) -> UploadError:
    """The file upload error naming the file and the blob, with any SAS signature redacted."""
    message = redact(f"uploading {path.name} to blob {target.blob_name} failed: {exc}")
    return UploadError("FileUploadFailed", message, details={"FilePath": str(path)})


def content_settings(headers: Iterable[UploadHeader]) -> tuple[ContentSettings, dict[str, str]]:
    """Map upload headers to blob content settings and `x-ms-meta-*` metadata; others are ignored."""
    settings: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for header in headers:
        name = header.name.lower()
        value = header.value or ""
        if name in _CONTENT_SETTINGS:
            settings[_CONTENT_SETTINGS[name]] = value
        elif name.startswith("x-ms-meta-"):
            metadata[header.name[len("x-ms-meta-") :]] = value
        else:
            log.info("upload header %s has no blob equivalent and is ignored", header.name)
    content = ContentSettings(
        content_type=settings.get("content_type"),
        content_encoding=settings.get("content_encoding"),
        content_language=settings.get("content_language"),
        content_disposition=settings.get("content_disposition"),
        cache_control=settings.get("cache_control"),
    )
    return content, metadata


def _target(directory: Path, relative: str) -> Path:
    """A destination inside `directory`, or ResourceFileWriteFailed when the path would escape it."""
    try:
        return safe_join(directory, relative)
    except PathEscapeError as exc:
        raise DownloadError("ResourceFileWriteFailed", f"invalid resource file path: {exc}") from exc


def _url_file_name(url: str) -> str:
    """The last path segment of a URL, the file name when no filePath is given."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _check_status(url: str, status: int) -> None:
    """Map an HTTP status to the Azure download failure it means."""
    if 200 <= status < 300:
        return
    if status >= 500 or status in (408, 429):
        raise _Transient(f"HTTP {status}", timed_out=status == 408)
    code = {404: "BlobNotFound", 401: "BlobAccessDenied", 403: "BlobAccessDenied"}.get(status, "BlobDownloadMiscError")
    raise DownloadError(code, redact(f"downloading {url} answered HTTP {status}"))


def _download_error(container_url: str, exc: AzureError) -> DownloadError:
    """Map an azure-storage-blob error to the Azure download failure it means."""
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        code = "BlobNotFound"
    elif isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        code = "BlobAccessDenied"
    elif isinstance(exc, ServiceResponseError):
        code = "BlobDownloadTimedOut"
    else:
        code = "BlobDownloadMiscError"
    return DownloadError(code, redact(f"downloading from container {container_url} failed: {exc}"))


def _write_stream(dest: Path, chunks: Iterator[bytes]) -> None:
    """Write chunks to a temporary file next to `dest` and rename it into place."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise _write_error(f"cannot create {dest}: {exc}", exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(tmp, dest)
    except OSError as exc:
        raise _write_error(f"cannot write {dest}: {exc}", exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_error(message: str, exc: OSError) -> DownloadError:
    """ResourceFileWriteFailed, or DiskFull when the disk ran out of space."""
    if is_enospc(exc):
        full = disk_full(message, "preprocessing_error")
        return DownloadError(full.code, message, category=full.category)
    return DownloadError("ResourceFileWriteFailed", message)
