"""UploadOutputFiles (finalizer): upload the files named by the task's output file specs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from nodeagent.blob import UploadTarget, should_upload
from nodeagent.diskspace import disk_full, is_enospc
from nodeagent.errors import StepError, UploadError
from nodeagent.messages import FailureCategory, OutputFileSpec, redact
from nodeagent.patterns import Match, expand_variables, has_wildcard, match_files
from nodeagent.steps.base import TaskContext

log = logging.getLogger(__name__)


def blob_name(pattern: str, path: str | None, match: Match) -> str:
    """Blob name of a match: `path` itself for a literal pattern, else `path/<relative>` (or `<relative>`)."""
    if not has_wildcard(pattern):
        return path or match.relative
    return f"{path.rstrip('/')}/{match.relative}" if path else match.relative


def check_blob_name(name: str) -> str:
    """Return `name` when it is a safe blob name (no `..` segment or control characters), else raise."""
    if not name or ".." in name.split("/") or any(ord(ch) < 32 for ch in name):
        raise UploadError("FileUploadFailed", f"{name!r} is not a valid blob name")
    return name


class UploadOutputFiles:
    """Upload matching output files whose upload condition holds; a no-op if the process never started."""

    name: ClassVar[str] = "UploadOutputFiles"
    category: ClassVar[FailureCategory] = "usererror"

    def run(self, ctx: TaskContext) -> None:
        """Upload every file; the first upload failure becomes a file upload error after all were tried."""
        if ctx.abandoned or not ctx.process_started:
            return
        errors: list[StepError] = []
        for output in ctx.spec.output_files:
            if should_upload(output.upload_condition, ctx.exit_code):
                errors.extend(self._upload_spec(ctx, output))
        if errors:
            raise errors[0]

    def _upload_spec(self, ctx: TaskContext, output: OutputFileSpec) -> list[StepError]:
        """Upload the matches of one output file spec; the errors met (a full disk for the logs among them)."""
        log_errors: list[StepError] = []
        errors = self._upload_matches(ctx, output, log_errors)
        return errors + log_errors[:1]

    def _upload_matches(self, ctx: TaskContext, output: OutputFileSpec, log_errors: list[StepError]) -> list[StepError]:
        """Upload each match, logging to the upload logs; log write failures go to `log_errors`."""
        pattern = expand_variables(output.file_pattern, ctx.env)
        matches = match_files(pattern, ctx.dirs.wd.resolve(), ctx.dirs.task_dir.resolve())
        if not matches:
            _log_line(ctx.dirs.upload_out, f"no files match {pattern}", log_errors)
        errors: list[StepError] = []
        for match in matches:
            try:
                target = UploadTarget(
                    container_url=output.container_url,
                    blob_name=check_blob_name(blob_name(pattern, output.path, match)),
                    headers=tuple(output.upload_headers),
                )
                ctx.deps.blob.upload(match.path, target)
            except UploadError as exc:
                log.warning("attempt %s: %s", ctx.attempt_id, exc.message)
                _log_line(ctx.dirs.upload_err, exc.message, log_errors)
                errors.append(exc)
                continue
            uploaded = f"uploaded {match.path} to {_container_name(output)}/{target.blob_name}"
            _log_line(ctx.dirs.upload_out, uploaded, log_errors)
        return errors


def _container_name(output: OutputFileSpec) -> str:
    """The container URL without its query string (which holds the SAS)."""
    parts = urlsplit(output.container_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _log_line(path: Path, message: str, errors: list[StepError]) -> None:
    """Append a timestamped line to an upload log file; a full disk is added to `errors`."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {redact(message)}\n")
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)
        if is_enospc(exc):
            errors.append(disk_full(f"cannot write the upload log {path.name}: the disk is full", "upload_error"))
