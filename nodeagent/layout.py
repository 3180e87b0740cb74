"""Every on-disk path of a node, and the environment a task process starts with.

The tree follows Azure Batch's node layout::

    <root>/shared/                                   AZ_BATCH_NODE_SHARED_DIR
    <root>/startup/                                  AZ_BATCH_NODE_STARTUP_DIR
    <root>/workitems/<jobId>/job-1/<taskId>/         AZ_BATCH_TASK_DIR
    <root>/workitems/<jobId>/job-1/<taskId>/wd/      AZ_BATCH_TASK_WORKING_DIR
    <root>/volatile/                                 agent-internal state
    <root>/applications/                             application packages
    <root>/fsmounts/                                 AZ_BATCH_NODE_MOUNTS_DIR
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nodeagent.identity import RunAs, identity_label
from nodeagent.messages import AttemptSpec


class PathEscapeError(ValueError):
    """A relative path is absolute, malformed or leaves the directory it must stay in."""


def check_name(name: str) -> str:
    """Return `name` if it is usable as one directory or file name, else raise PathEscapeError."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise PathEscapeError(f"{name!r} is not a valid path segment")
    return name


def relative_parts(relative: str) -> tuple[str, ...]:
    """Split a user-supplied relative path into clean segments, refusing anything that could escape."""
    if not relative or "\0" in relative:
        raise PathEscapeError(f"{relative!r} is not a valid relative path")
    posix = PurePosixPath(relative.replace("\\", "/"))
    if posix.is_absolute() or (len(relative) > 1 and relative[1] == ":"):
        raise PathEscapeError(f"{relative!r} is an absolute path")
    parts = tuple(part for part in posix.parts if part != ".")
    if not parts or ".." in parts:
        raise PathEscapeError(f"{relative!r} must name a path inside its directory without '..'")
    return parts


def safe_join(base: Path, relative: str) -> Path:
    """`base/relative`, refusing absolute paths, `..` and symlinked parents that lead outside `base`."""
    target = base.joinpath(*relative_parts(relative))
    real_base = base.resolve()
    if not target.parent.resolve().is_relative_to(real_base):
        raise PathEscapeError(f"{relative!r} leads outside its directory through a symbolic link")
    return target


def is_inside(path: Path, directory: Path) -> bool:
    """True when `path`, with every symlink resolved, lies inside `directory`."""
    return path.resolve().is_relative_to(directory.resolve())


@dataclass(frozen=True)
class TaskDirs:
    """Directories and files of one task on a node."""

    task_dir: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>`"""

    wd: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>/wd`"""

    stdout: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>/stdout.txt`"""

    stderr: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>/stderr.txt`"""

    upload_out: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>/fileuploadout.txt`"""

    upload_err: Path
    """`<root>/workitems/<jobId>/job-1/<taskId>/fileuploaderr.txt`"""


@dataclass(frozen=True)
class NodeLayout:
    """The directory tree under one node root."""

    root: Path
    """`<root>`"""

    @property
    def shared(self) -> Path:
        """`<root>/shared`"""
        return self.root / "shared"

    @property
    def startup(self) -> Path:
        """`<root>/startup`"""
        return self.root / "startup"

    @property
    def workitems(self) -> Path:
        """`<root>/workitems`"""
        return self.root / "workitems"

    @property
    def volatile(self) -> Path:
        """`<root>/volatile`"""
        return self.root / "volatile"

    @property
    def spool(self) -> Path:
        """`<root>/volatile/spool`: reports not yet answered by the controller."""
        return self.volatile / "spool"

    @property
    def attempt_state(self) -> Path:
        """`<root>/volatile/attempts`: per-attempt step state files."""
        return self.volatile / "attempts"

    @property
    def applications(self) -> Path:
        """`<root>/applications`"""
        return self.root / "applications"

    @property
    def fsmounts(self) -> Path:
        """`<root>/fsmounts`"""
        return self.root / "fsmounts"

    def create(self) -> None:
        """Create the node-level directories (idempotent)."""
        for path in (
            self.shared,
            self.startup,
            self.workitems,
            self.spool,
            self.attempt_state,
            self.applications,
            self.fsmounts,
        ):
            path.mkdir(parents=True, exist_ok=True)

    def task_dirs(self, job_id: str, task_id: str) -> TaskDirs:
        """Paths of task `task_id` of job `job_id`."""
        task_dir = self.workitems / check_name(job_id) / "job-1" / check_name(task_id)
        return TaskDirs(
            task_dir=task_dir,
            wd=task_dir / "wd",
            stdout=task_dir / "stdout.txt",
            stderr=task_dir / "stderr.txt",
            upload_out=task_dir / "fileuploadout.txt",
            upload_err=task_dir / "fileuploaderr.txt",
        )

    def spool_file(self, attempt_id: str) -> Path:
        """`<root>/volatile/spool/<attemptId>.json`"""
        return self.spool / f"{check_name(attempt_id)}.json"

    def state_file(self, attempt_id: str) -> Path:
        """`<root>/volatile/attempts/<attemptId>.json`"""
        return self.attempt_state / f"{check_name(attempt_id)}.json"


def task_environment(
    layout: NodeLayout, dirs: TaskDirs, spec: AttemptSpec, run_as: RunAs, agent_path: str
) -> dict[str, str]:
    """The complete environment of a task process.

    It starts empty (the agent's own environment holds secrets), adds PATH, HOME,
    USER, LOGNAME and the AZ_BATCH_* variables, then the task's environment
    settings. AZ_BATCH_* names are reserved: a user setting cannot replace them.
    """
    batch = batch_variables(layout, dirs, spec)
    env = {
        "PATH": os.pathsep.join([agent_path, str(layout.shared), str(dirs.wd)]),
        "HOME": str(dirs.wd),
        "USER": run_as.username,
        "LOGNAME": run_as.username,
    }
    env.update(spec.environment)
    env.update(batch)
    return env


def batch_variables(layout: NodeLayout, dirs: TaskDirs, spec: AttemptSpec) -> dict[str, str]:
    """The AZ_BATCH_* variables of a task."""
    account_url = spec.account_url if spec.account_url.endswith("/") else spec.account_url + "/"
    return {
        "AZ_BATCH_ACCOUNT_NAME": spec.account_name,
        "AZ_BATCH_ACCOUNT_URL": account_url,
        "AZ_BATCH_POOL_ID": spec.pool_id,
        "AZ_BATCH_NODE_ID": spec.node_id,
        "AZ_BATCH_NODE_IS_DEDICATED": "true",
        "AZ_BATCH_NODE_ROOT_DIR": str(layout.root),
        "AZ_BATCH_NODE_SHARED_DIR": str(layout.shared),
        "AZ_BATCH_NODE_STARTUP_DIR": str(layout.startup),
        "AZ_BATCH_NODE_MOUNTS_DIR": str(layout.fsmounts),
        "AZ_BATCH_JOB_ID": spec.job_id,
        "AZ_BATCH_TASK_ID": spec.task_id,
        "AZ_BATCH_TASK_DIR": str(dirs.task_dir),
        "AZ_BATCH_TASK_WORKING_DIR": str(dirs.wd),
        "AZ_BATCH_TASK_USER_IDENTITY": identity_label(spec.user_identity),
    }
