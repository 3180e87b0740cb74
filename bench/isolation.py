"""What a node agent does around every command, written plainly for the isolating raw Celery task.

For each task: a task directory holding `wd`, `stdout.txt` and `stderr.txt`, owned by an
unprivileged user (modes 0700 and 0600); a fresh cgroup in each v1 hierarchy the agent uses;
the command started as that user, in a session of its own, inside those cgroups (the starting
thread joins them around the fork, so the child is born there); its CPU, peak memory and IO
read from them once it exits; a check that nothing is left in them; and the cgroups removed.
The directories stay until the run's cleanup, as task directories stay until their retention
time. Without cgroup v1 (cpuacct, memory, blkio and pids), the cgroup part is left out.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchyard.services import SHARED_NODES_BASE

CGROUP_ROOT = Path("/sys/fs/cgroup")
HIERARCHIES = ("cpuacct", "memory", "blkio", "pids")
GROUP = "batchyard-bench-raw"
"""The cgroup under which the tasks' cgroups are made, in each hierarchy."""

TASK_USER = "nobody"
USAGE_FILES = (
    ("cpuacct", "cpuacct.usage_user"),
    ("cpuacct", "cpuacct.usage_sys"),
    ("memory", "memory.max_usage_in_bytes"),
    ("blkio", "blkio.throttle.io_service_bytes"),
    ("blkio", "blkio.throttle.io_serviced"),
)


@functools.cache
def cgroups_usable() -> bool:
    """True when every hierarchy is mounted as cgroup v1 and this process may make cgroups in it."""
    return all((CGROUP_ROOT / name / "tasks").is_file() for name in HIERARCHIES) and os.geteuid() == 0


@contextmanager
def task_root() -> Iterator[Path | None]:
    """A directory for the tasks' directories, on the file system of Batchyard's node roots, removed after.

    None unless this process runs as root: only root can give directories to the task user.
    """
    if os.geteuid() != 0:
        yield None
        return
    root = SHARED_NODES_BASE / f"raw-celery-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, mode=0o755)
    groups = [CGROUP_ROOT / name / GROUP for name in HIERARCHIES] if cgroups_usable() else []
    for group in groups:
        group.mkdir(exist_ok=True)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for group in groups:
            with contextlib.suppress(FileNotFoundError):
                group.rmdir()


def run_isolated(root: Path, index: int) -> int:
    """Run `/bin/true` for task `index` the way an agent runs a task; its exit code."""
    user = _task_user()
    task_dir = root / f"t{index:06d}"
    wd = task_dir / "wd"
    for directory in (task_dir, wd):
        os.mkdir(directory, 0o700)
        os.chown(directory, user.pw_uid, user.pw_gid)
    out, err = (_log_file(task_dir / name, user) for name in ("stdout.txt", "stderr.txt"))
    groups = [CGROUP_ROOT / name / GROUP / f"t{index:06d}" for name in HIERARCHIES] if cgroups_usable() else []
    try:
        for group in groups:
            group.mkdir()
        with _inside(groups):
            child = subprocess.Popen(
                ["/bin/true"], cwd=wd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                user=user.pw_uid, group=user.pw_gid, extra_groups=[], start_new_session=True,
            )  # fmt: skip
        code = child.wait()
        _usage(groups)
        return code
    finally:
        os.close(out)
        os.close(err)
        if groups and not (groups[0] / "cgroup.procs").read_text().split():
            for group in groups:
                group.rmdir()


@functools.cache
def _task_user() -> pwd.struct_passwd:
    """The task user's account, looked up once, as the agent reuses a resolved identity."""
    return pwd.getpwnam(TASK_USER)


def _log_file(path: Path, user: pwd.struct_passwd) -> int:
    """A new, empty log file owned by the task user; its descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.fchown(fd, user.pw_uid, user.pw_gid)
    return fd


@contextmanager
def _inside(groups: list[Path]) -> Iterator[None]:
    """Move the calling thread into `groups` and back again afterwards."""
    thread = threading.get_native_id()
    homes = _thread_cgroups(thread) if groups else []
    for group in groups:
        (group / "tasks").write_text(str(thread))
    try:
        yield
    finally:
        for home in homes:
            (home / "tasks").write_text(str(thread))


@functools.cache
def _thread_cgroups(thread: int) -> list[Path]:
    """The cgroup in each hierarchy of the calling thread (`thread`, its id), read once per thread."""
    where = {}
    for line in Path("/proc/thread-self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            where[name] = path
    return [CGROUP_ROOT / name / where[name].lstrip("/") for name in HIERARCHIES]


def _usage(groups: list[Path]) -> list[str]:
    """What the agent reads of an attempt's usage."""
    if not groups:
        return []
    by_name = dict(zip(HIERARCHIES, groups, strict=True))
    return [(by_name[name] / file).read_text() for name, file in USAGE_FILES]
