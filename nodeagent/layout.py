"""Every on-disk path of a node, and the environment a task process starts with.

The tree follows Azure Batch's node layout::

    <root>/shared/                                   AZ_BATCH_NODE_SHARED_DIR
    <root>/startup/                                  AZ_BATCH_NODE_STARTUP_DIR
    <root>/workitems/<jobId>/job-1/<taskId>/         AZ_BATCH_TASK_DIR
    <root>/workitems/<jobId>/job-1/<taskId>/wd/      AZ_BATCH_TASK_WORKING_DIR
    <root>/volatile/                                 agent-internal state
    <root>/applications/<appId>_<version>/           AZ_BATCH_APP_PACKAGE_<app>_<version>
    <root>/fsmounts/                                 AZ_BATCH_NODE_MOUNTS_DIR

Ownership: the node-level directories belong to the agent. `shared/` is
world-writable with the sticky bit (1777) like Azure's; `startup/`,
`applications/`, `workitems/` and `fsmounts/` are readable by everyone (0755);
`volatile/` (spool, step state, retention index) is the agent's alone (0700).
`workitems/` carries the top-directory flag where the filesystem has it, so each
job's tree is allocated apart from the others (see `nodeagent/topdir.py`).
A task directory belongs to the task's user (see `steps/prepare_dirs.py`).

Application package variables (Linux rule of the Azure reference): the name is
`AZ_BATCH_APP_PACKAGE_` followed by the application id and version joined by
`_`, lowercased, with every character other than a letter, digit or `_`
(`-`, `.`, `#` ...) turned into `_`: application `My-App` version `1.2` gives
`AZ_BATCH_APP_PACKAGE_my_app_1_2`, and `AZ_BATCH_APP_PACKAGE_my_app` when that
version is the default. The directory keeps the given casing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from nodeagent.identity import RunAs, identity_label
from nodeagent.messages import ApplicationPackageSpec, AttemptSpec, MultiInstanceSpec, PoolConfig, StartTaskSpec
from nodeagent.topdir import mark_top

NODE_DIR_MODES = {"shared": 0o1777, "startup": 0o755, "workitems": 0o755, "applications": 0o755, "fsmounts": 0o755}
"""Mode of each node-level directory, set on every start whatever the umask."""

VOLATILE_MODE = 0o700
"""Mode of `volatile/` and its subdirectories: agent state no task may read."""

APP_PACKAGE_PREFIX = "AZ_BATCH_APP_PACKAGE_"
"""Prefix of the application package variables."""

_NOT_ENV_CHAR = re.compile(r"[^a-z0-9_]")


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

    @cached_property
    def shared(self) -> Path:
        """`<root>/shared`"""
        return self.root / "shared"

    @cached_property
    def startup(self) -> Path:
        """`<root>/startup`"""
        return self.root / "startup"

    @cached_property
    def workitems(self) -> Path:
        """`<root>/workitems`"""
        return self.root / "workitems"

    @cached_property
    def volatile(self) -> Path:
        """`<root>/volatile`"""
        return self.root / "volatile"

    @cached_property
    def spool(self) -> Path:
        """`<root>/volatile/spool`: reports not yet answered by the controller."""
        return self.volatile / "spool"

    @cached_property
    def attempt_state(self) -> Path:
        """`<root>/volatile/attempts`: per-attempt step state files."""
        return self.volatile / "attempts"

    @cached_property
    def applications(self) -> Path:
        """`<root>/applications`"""
        return self.root / "applications"

    @cached_property
    def retention_index(self) -> Path:
        """`<root>/volatile/retention.json`: task directories waiting for their retention time to pass."""
        return self.volatile / "retention.json"

    @cached_property
    def startup_wd(self) -> Path:
        """`<root>/startup/wd`: the start task's working directory."""
        return self.startup / "wd"

    def package_dir(self, application_id: str, version: str) -> Path:
        """`<root>/applications/<applicationId>_<version>`"""
        return self.applications / check_name(f"{check_name(application_id)}_{check_name(version)}")

    @cached_property
    def fsmounts(self) -> Path:
        """`<root>/fsmounts`"""
        return self.root / "fsmounts"

    def create(self) -> None:
        """Create the node-level directories with their modes (idempotent)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, mode in NODE_DIR_MODES.items():
            path = self.root / name
            path.mkdir(exist_ok=True)
            os.chmod(path, mode)
        mark_top(self.workitems)
        for path in (self.volatile, self.spool, self.attempt_state):
            path.mkdir(exist_ok=True)
            os.chmod(path, VOLATILE_MODE)

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
    variables = node_variables(layout, spec.account_name, spec.account_url, spec.pool_id, spec.node_id)
    variables.update(
        {
            "AZ_BATCH_JOB_ID": spec.job_id,
            "AZ_BATCH_TASK_ID": spec.task_id,
            "AZ_BATCH_TASK_DIR": str(dirs.task_dir),
            "AZ_BATCH_TASK_WORKING_DIR": str(dirs.wd),
            "AZ_BATCH_TASK_USER_IDENTITY": identity_label(spec.user_identity),
        }
    )
    if spec.job_preparation_task_id:
        prep = layout.task_dirs(spec.job_id, spec.job_preparation_task_id)
        variables["AZ_BATCH_JOB_PREP_DIR"] = str(prep.task_dir)
        variables["AZ_BATCH_JOB_PREP_WORKING_DIR"] = str(prep.wd)
    variables.update(package_variables(layout, spec.application_packages))
    if spec.multi_instance is not None:
        variables.update(multi_instance_variables(spec.multi_instance, dirs))
    return variables


def multi_instance_variables(instance: MultiInstanceSpec, dirs: TaskDirs) -> dict[str, str]:
    """The variables an instance of a multi-instance task has: where the others run, which one leads."""
    return {
        "AZ_BATCH_TASK_SHARED_DIR": str(dirs.task_dir),
        "AZ_BATCH_HOST_LIST": ",".join(instance.hosts),
        "AZ_BATCH_NODE_LIST": ";".join(instance.hosts),
        "AZ_BATCH_MASTER_NODE": f"{instance.hosts[0] if instance.hosts else ''}:{instance.master_port}",
        "AZ_BATCH_IS_CURRENT_NODE_MASTER": "true" if instance.is_primary else "false",
        "CCP_NODES": " ".join([str(len(instance.hosts)), *(f"{host} 1" for host in instance.hosts)]),
    }


def node_variables(
    layout: NodeLayout, account_name: str, account_url: str, pool_id: str, node_id: str
) -> dict[str, str]:
    """The AZ_BATCH_* variables every task on the node has, the start task included."""
    return {
        "AZ_BATCH_ACCOUNT_NAME": account_name,
        "AZ_BATCH_ACCOUNT_URL": account_url if account_url.endswith("/") else account_url + "/",
        "AZ_BATCH_POOL_ID": pool_id,
        "AZ_BATCH_NODE_ID": node_id,
        "AZ_BATCH_NODE_IS_DEDICATED": "true",
        "AZ_BATCH_NODE_ROOT_DIR": str(layout.root),
        "AZ_BATCH_NODE_SHARED_DIR": str(layout.shared),
        "AZ_BATCH_NODE_STARTUP_DIR": str(layout.startup),
        "AZ_BATCH_NODE_MOUNTS_DIR": str(layout.fsmounts),
    }


def package_variable(application_id: str, version: str | None = None) -> str:
    """`AZ_BATCH_APP_PACKAGE_<app>[_<version>]`, lowercased, every other character than [a-z0-9_] as `_`."""
    suffix = application_id if version is None else f"{application_id}_{version}"
    return APP_PACKAGE_PREFIX + _NOT_ENV_CHAR.sub("_", suffix.lower())


def package_variables(layout: NodeLayout, packages: Iterable[ApplicationPackageSpec]) -> dict[str, str]:
    """The package directory of every package by version, and of the default version by application."""
    variables: dict[str, str] = {}
    for package in packages:
        directory = str(layout.package_dir(package.application_id, package.version))
        variables[package_variable(package.application_id, package.version)] = directory
        if package.is_default:
            variables[package_variable(package.application_id)] = directory
    return variables


def start_task_environment(
    layout: NodeLayout, config: PoolConfig, node_id: str, run_as: RunAs, agent_path: str
) -> dict[str, str]:
    """The complete environment of the start task: like a task's, without job and task ids.

    AZ_BATCH_TASK_DIR and AZ_BATCH_TASK_WORKING_DIR name `startup/` and
    `startup/wd`; the pool's application packages have their variables.
    """
    start: StartTaskSpec | None = config.start_task
    variables = node_variables(layout, config.account_name, config.account_url, config.pool_id, node_id)
    variables["AZ_BATCH_TASK_DIR"] = str(layout.startup)
    variables["AZ_BATCH_TASK_WORKING_DIR"] = str(layout.startup_wd)
    if start is not None:
        variables["AZ_BATCH_TASK_USER_IDENTITY"] = identity_label(start.user_identity)
    variables.update(package_variables(layout, config.application_packages))
    env = {
        "PATH": os.pathsep.join([agent_path, str(layout.shared), str(layout.startup_wd)]),
        "HOME": str(layout.startup_wd),
        "USER": run_as.username,
        "LOGNAME": run_as.username,
    }
    env.update(start.environment if start is not None else {})
    env.update(variables)
    return env
