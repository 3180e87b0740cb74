"""Fakes and builders for tests of the agent and of code that drives it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.blob import UploadTarget
from nodeagent.errors import DownloadError, UploadError
from nodeagent.identity import current_user
from nodeagent.layout import NodeLayout, safe_join
from nodeagent.messages import AttemptSpec, ResourceFileSpec, TaskReport
from nodeagent.state import StepState
from nodeagent.steps.base import RunDeps, TaskContext


def make_attempt_spec(**fields: Any) -> AttemptSpec:
    """An AttemptSpec with sensible defaults, overridden by `fields`."""
    values: dict[str, Any] = {
        "attempt_id": "attempt-1",
        "job_id": "job-1",
        "task_id": "task-1",
        "pool_id": "pool-1",
        "node_id": "node-1",
        "account_name": "devaccount",
        "account_url": "http://127.0.0.1:8080",
        "command_line": "/bin/true",
    }
    values.update(fields)
    return AttemptSpec(**values)


@dataclass
class FakeBlobStore:
    """BlobStore keeping blobs in memory: `sources` by URL for downloads, `uploaded` by blob name."""

    sources: dict[str, bytes] = field(default_factory=dict)
    uploaded: dict[str, bytes] = field(default_factory=dict)
    targets: list[UploadTarget] = field(default_factory=list)
    fail_uploads: set[str] = field(default_factory=set)

    def download(self, source: ResourceFileSpec, wd: Path) -> list[Path]:
        """Write the bytes registered for `source.http_url` to its file path."""
        url = source.http_url or ""
        if url not in self.sources:
            raise DownloadError("BlobNotFound", f"{url} not found")
        dest = safe_join(wd, source.file_path or "download")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.sources[url])
        return [dest]

    def upload(self, path: Path, target: UploadTarget) -> None:
        """Keep the file's bytes under its blob name, or fail when the name is in `fail_uploads`."""
        if target.blob_name in self.fail_uploads:
            raise UploadError("FileUploadFailed", f"uploading {path.name} failed")
        self.targets.append(target)
        self.uploaded[target.blob_name] = path.read_bytes()


@dataclass
class FakeReporter:
    """Reporter that records what it is given."""

    reports: list[tuple[str, TaskReport]] = field(default_factory=list)

    def deliver(self, attempt_id: str, report: TaskReport) -> None:
        """Record the report."""
        self.reports.append((attempt_id, report))


def make_context(root: Path, spec: AttemptSpec | None = None, deps: RunDeps | None = None) -> TaskContext:
    """A TaskContext for `spec` under node root `root`, with fake blob store and reporter by default."""
    attempt = spec or make_attempt_spec()
    layout = NodeLayout(root)
    return TaskContext(
        spec=attempt,
        layout=layout,
        dirs=layout.task_dirs(attempt.job_id, attempt.task_id),
        run_as=current_user(),
        deps=deps or RunDeps(blob=FakeBlobStore(), reporter=FakeReporter(), agent_path="/usr/bin:/bin", kill_grace=1.0),
        state=StepState(layout.state_file(attempt.attempt_id)),
        cancel=threading.Event(),
    )
