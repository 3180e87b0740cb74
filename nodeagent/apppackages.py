"""Application packages: each version downloaded and unpacked once per node under `applications/`.

A package is a .zip behind a (SAS) URL. It is streamed to a private work
directory next to its final place, unpacked there (an entry whose path would
leave the directory fails the install), marked, and renamed into
`<root>/applications/<applicationId>_<version>` in one step, so a reader sees
nothing or the whole package. One lock per package directory makes a second
task wanting the same version wait and reuse it; the marker makes every later
install a no-op. Packages belong to the agent and are readable by everyone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from nodeagent.blob import BlobStore
from nodeagent.errors import DownloadError, PackageError
from nodeagent.layout import NodeLayout, PathEscapeError, relative_parts
from nodeagent.messages import ApplicationPackageSpec, FailureCategory, ResourceFileSpec, redact

log = logging.getLogger(__name__)

MARKER = ".batchyard-package.json"
"""File inside a package directory that proves it was unpacked completely."""

INSTALL_FAILED = "ApplicationPackageInstallFailed"
"""Failure code of a package that could not be downloaded or unpacked for another reason than access."""

KEPT_DOWNLOAD_CODES = frozenset({"BlobNotFound", "BlobAccessDenied"})
"""Download failure codes a package failure keeps as they are."""

_locks_guard = threading.Lock()
_locks: dict[Path, threading.Lock] = {}


def install(package: ApplicationPackageSpec, layout: NodeLayout, blob: BlobStore) -> Path:
    """Make sure `package` is unpacked on the node; its directory."""
    target = _target(package, layout)
    with _lock_for(target):
        if is_installed(target):
            return target
        _remove_leftovers(target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".work", dir=target.parent))
        try:
            unpacked = _fetch_and_unpack(package, blob, work)
            _write_marker(unpacked, package)
            if target.exists():
                shutil.rmtree(target)
            os.rename(unpacked, target)
        except OSError as exc:
            raise _failure(package, f"cannot unpack it: {exc.strerror or exc}", category="servererror") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info("application package %s version %s installed in %s", package.application_id, package.version, target)
    return target


def install_all(packages: Iterable[ApplicationPackageSpec], layout: NodeLayout, blob: BlobStore) -> list[Path]:
    """Install every package in order; their directories."""
    return [install(package, layout, blob) for package in packages]


def is_installed(target: Path) -> bool:
    """True when `target` holds a completely unpacked package."""
    return (target / MARKER).is_file()


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a zip into `dest`, refusing any entry that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                _extract(zipped, info, dest)
    except zipfile.BadZipFile as exc:
        raise PackageError(INSTALL_FAILED, f"the package is not a valid zip file: {exc}") from exc


def _target(package: ApplicationPackageSpec, layout: NodeLayout) -> Path:
    """The package's directory, or a failure when its id or version cannot name one."""
    try:
        return layout.package_dir(package.application_id, package.version)
    except PathEscapeError as exc:
        raise _failure(package, f"its id or version cannot name a directory: {exc}") from exc


def _lock_for(target: Path) -> threading.Lock:
    """The lock of one package directory, shared by every caller in this process."""
    with _locks_guard:
        return _locks.setdefault(target, threading.Lock())


def _remove_leftovers(target: Path) -> None:
    """Delete work directories an interrupted install of `target` left behind."""
    for leftover in target.parent.glob(f".{target.name}.*.work"):
        shutil.rmtree(leftover, ignore_errors=True)


def _fetch_and_unpack(package: ApplicationPackageSpec, blob: BlobStore, work: Path) -> Path:
    """Download the zip into `work` and unpack it into `work/unpacked`; that directory."""
    downloads = work / "download"
    downloads.mkdir()
    source = ResourceFileSpec(http_url=package.package_url, file_path="package.zip")
    try:
        (archive,) = blob.download(source, downloads)
    except DownloadError as exc:
        code = exc.code if exc.code in KEPT_DOWNLOAD_CODES else INSTALL_FAILED
        raise _failure(package, f"download failed: {exc.message}", code=code) from exc
    unpacked = work / "unpacked"
    unpacked.mkdir(mode=0o755)
    os.chmod(unpacked, 0o755)
    try:
        unpack(archive, unpacked)
    except PackageError as exc:
        raise _failure(package, exc.message) from exc
    return unpacked


def _extract(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Write one zip entry below `dest` (a link entry becomes a plain file holding its target)."""
    try:
        parts = relative_parts(info.filename)
    except PathEscapeError as exc:
        raise PackageError(INSTALL_FAILED, f"zip entry {info.filename!r} leaves the package directory") from exc
    path = dest.joinpath(*parts)
    _make_dirs(dest, path if info.is_dir() else path.parent)
    if info.is_dir():
        return
    with zipped.open(info) as source, open(path, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
    os.chmod(path, entry_mode(info))


def _make_dirs(dest: Path, directory: Path) -> None:
    """Create `directory` and its missing parents below `dest`, each 0755."""
    missing = []
    current = directory
    while current != dest and not current.is_dir():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir()
        os.chmod(path, 0o755)


def entry_mode(info: zipfile.ZipInfo) -> int:
    """Mode of an unpacked file: its zip mode made readable by all, writable by none but the agent."""
    mode = (info.external_attr >> 16) & 0o777 or 0o644
    if mode & 0o100:
        mode |= 0o111
    return (mode | 0o444) & 0o755


def _write_marker(directory: Path, package: ApplicationPackageSpec) -> None:
    """Mark `directory` as completely unpacked."""
    record = {
        "applicationId": package.application_id,
        "version": package.version,
        "installed": datetime.now(UTC).isoformat(),
    }
    marker = directory / MARKER
    marker.write_text(json.dumps(record))
    os.chmod(marker, 0o644)


def _failure(
    package: ApplicationPackageSpec, reason: str, *, code: str = INSTALL_FAILED, category: FailureCategory = "usererror"
) -> PackageError:
    """A package failure naming the application and version (never a SAS signature)."""
    return PackageError(
        code,
        redact(f"application package {package.application_id} version {package.version}: {reason}"),
        category=category,
        details={"ApplicationId": package.application_id, "Version": package.version},
    )
