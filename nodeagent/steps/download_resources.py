"""DownloadResourceFiles: place the task's resource files under its working directory."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import ClassVar

from nodeagent.errors import AttemptAbandoned, DownloadError
from nodeagent.identity import RunAs
from nodeagent.messages import FailureCategory, ResourceFileSpec
from nodeagent.ownership import hand_over
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)

DEFAULT_FILE_MODE = 0o770
"""Azure's default mode of a resource file on Linux."""


def parse_file_mode(text: str | None) -> int:
    """An octal fileMode string as permission bits (setuid, setgid and sticky removed)."""
    if not text:
        return DEFAULT_FILE_MODE
    try:
        return int(text, 8) & 0o777
    except ValueError as exc:
        raise DownloadError("ResourceFileWriteFailed", f"fileMode {text!r} is not an octal number") from exc


def download_key(source: ResourceFileSpec, wd: Path) -> str:
    """Stable state key of one resource file: a hash of its source and destination."""
    digest = hashlib.sha256(f"{source.model_dump_json()}\n{wd}".encode()).hexdigest()
    return f"download:{digest}"


class DownloadResourceFiles:
    """Download every resource file, skipping ones this attempt already fetched."""

    name: ClassVar[str] = "DownloadResourceFiles"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Download, then apply each file's mode; failures are pre-processing errors."""
        download_all(ctx, ctx.spec.resource_files, ctx.dirs.wd)


def download_all(ctx: TaskContext, sources: list[ResourceFileSpec], target: Path) -> None:
    """Download `sources` below `target` with their modes, skipping those this attempt already fetched."""
    for source in sources:
        if ctx.cancel.is_set():
            raise AttemptAbandoned(ctx.attempt_id)
        key = download_key(source, target)
        if ctx.state.is_done(key):
            log.info("attempt %s: resource file %s already downloaded", ctx.attempt_id, source.file_path)
            continue
        mode = parse_file_mode(source.file_mode)
        paths = ctx.deps.blob.download(source, target)
        place_files(paths, mode, target, ctx.run_as)
        ctx.state.mark_done(key, [str(path) for path in paths])


def place_files(paths: list[Path], mode: int, wd: Path, run_as: RunAs) -> None:
    """Apply the file mode, then give the files and the directories created for them to the task's user."""
    _apply_mode(paths, mode)
    try:
        hand_over(paths, wd, run_as)
    except OSError as exc:
        raise DownloadError("ResourceFileWriteFailed", f"cannot give the files to the task user: {exc}") from exc


def _apply_mode(paths: list[Path], mode: int) -> None:
    """chmod each downloaded file (never through a link a task may have put there)."""
    for path in paths:
        try:
            os.chmod(path, mode, follow_symlinks=False)
        except OSError as exc:
            raise DownloadError("ResourceFileWriteFailed", f"cannot set the mode of {path.name}: {exc}") from exc
