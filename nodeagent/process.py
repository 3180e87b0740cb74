"""The only module that starts processes.

A command runs without a shell, in a new session (so in its own process group),
with stdout and stderr written straight to files. `run` starts it through a
starter: the agent's launcher process (`nodeagent.launcher`), which forks it
into its cgroup and identity with one exec, or, by default, `start_popen`
here (used where no launcher runs: tools, tests). Stopping it sends SIGTERM to
the group and to any descendant that left the group, waits a grace period, then
sends SIGKILL the same way.

`run_tool` runs the agent's own short helper programs (useradd, chpasswd,
ssh-keygen...) with a fixed environment, input fed on stdin and the combined
output captured; it never logs that input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import psutil

from nodeagent.errors import ProcessLost, ProcessStartError

if TYPE_CHECKING:
    # Only types here: both import the account tools, which run through this module.
    from nodeagent.cgroups import AttemptCgroup
    from nodeagent.identity import RunAs

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How often a running process is checked for exit, timeout and cancellation."""

TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the agent's helper programs, which live in the sbin directories."""

TOOL_NOT_FOUND = 127
"""Exit code `run_tool` returns when the program does not exist (the shell's convention)."""

TOOL_TIMED_OUT = 124
"""Exit code `run_tool` returns when the program ran past its timeout (timeout(1)'s convention)."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run, where, with which environment and limits."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    stdout_path: Path
    stderr_path: Path
    timeout: float | None = None
    kill_grace: float = 5.0
    run_as: RunAs | None = None
    cancel: threading.Event | None = None
    on_start: Callable[[int], None] | None = field(default=None, compare=False)
    keep_group: bool = False
    """Leave what the command started in its process group running after it exits (it is stopped later)."""
    cgroup: AttemptCgroup | None = None
    """The cgroup the command runs in."""


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    started_at: datetime
    ended_at: datetime
    user_cpu_seconds: float = 0.0
    kernel_cpu_seconds: float = 0.0


@dataclass(frozen=True)
class ToolResult:
    """How a helper program ended: its exit code and its stdout and stderr together."""

    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        """True when the program exited 0."""
        return self.exit_code == 0


RunFunction = Callable[[ProcessSpec], ProcessResult]
"""Signature of `run`, for code that receives it as a dependency."""


@dataclass(frozen=True)
class Exit:
    """How a started process ended: its raw wait status and CPU times."""

    status: int
    user_cpu_seconds: float
    kernel_cpu_seconds: float


class Child(Protocol):
    """A started process, as `run` follows it."""

    @property
    def pid(self) -> int:
        """The process id (and process group id)."""

    def wait(self, timeout: float | None) -> Exit | None:
        """Its exit once it ended, waiting at most `timeout` seconds (None: until it ends).

        Raises ProcessLost when its exit can no longer be known.
        """


Starter = Callable[[ProcessSpec], Child]
"""Starts a process as a ProcessSpec says (`start_popen`, or the agent's launcher)."""


def run(spec: ProcessSpec, start: Starter | None = None) -> ProcessResult:
    """Run a process to completion, timeout or cancellation, leaving none of its tree behind."""
    if not spec.argv:
        raise ProcessStartError("CommandLaunchFailed", "the command line is empty")
    started_at = datetime.now(UTC)
    child = (start or start_popen)(spec)
    if spec.on_start is not None:
        spec.on_start(child.pid)
    deadline = None if spec.timeout is None else time.monotonic() + max(spec.timeout, 0.0)
    try:
        ended, timed_out, cancelled = _wait(child, spec, deadline)
        if ended is None:
            ended = _stop(child, spec.kill_grace)
    except ProcessLost:
        signal_tree(child.pid, signal.SIGKILL, _descendants(child.pid))
        raise
    if not spec.keep_group:
        # Whatever the command left running in its group is stopped with it.
        signal_tree(child.pid, signal.SIGKILL, descendants=())
    return _result(ended, started_at, timed_out, cancelled)


def start_popen(spec: ProcessSpec) -> Child:
    """Start the process from this one with subprocess; a cgroup is entered right after the start."""
    switch = spec.run_as is not None and spec.run_as.uid != os.getuid()
    run_as = spec.run_as if switch else None
    try:
        with open(spec.stdout_path, "wb") as out, open(spec.stderr_path, "wb") as err:
            popen = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else list(run_as.groups),
            )
    except OSError as exc:
        raise start_error(spec.argv[0], exc) from exc
    if spec.cgroup is not None:
        try:
            spec.cgroup.enter(popen.pid)
        except OSError as exc:
            log.warning("cgroup %s: cannot move process %s into it: %s", spec.cgroup.dirs[0], popen.pid, exc)
    return _PopenChild(popen)


def start_error(program: str, exc: OSError) -> ProcessStartError:
    """The launch failure an OSError of starting `program` means."""
    missing = isinstance(exc, FileNotFoundError) and exc.filename is not None
    if missing and str(exc.filename) in (program, os.fsdecode(program)):
        return ProcessStartError("CommandProgramNotFound", f"program {program!r} was not found")
    return ProcessStartError("CommandLaunchFailed", f"cannot start {program!r}: {exc}")


class _PopenChild:
    """A child of this process: waited for with a pidfd where the kernel has them, reaped with wait4."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.watch = _ExitWatch(popen.pid)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.popen.pid

    def wait(self, timeout: float | None) -> Exit | None:
        """Reap the child if it exits within `timeout` seconds."""
        ended = self._reap(block=timeout is None)
        if ended is None and timeout:
            self.watch.wait(timeout)
            ended = self._reap(block=False)
        return ended

    def _reap(self, *, block: bool) -> Exit | None:
        pid, status, rusage = os.wait4(self.popen.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        # Tell Popen the child is gone so it never waits on a reused pid.
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.watch.close()
        return Exit(status, rusage.ru_utime, rusage.ru_stime)


def _wait(child: Child, spec: ProcessSpec, deadline: float | None) -> tuple[Exit | None, bool, bool]:
    """Wait for exit, the deadline or cancellation; returns (exit or None, timed_out, cancelled)."""
    ended = child.wait(0)
    while ended is None:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            log.info("process %s: wall-clock limit reached, stopping its process group", child.pid)
            return None, True, False
        if spec.cancel is not None and spec.cancel.is_set():
            log.info("process %s: cancelled, stopping its process group", child.pid)
            return None, False, True
        ended = child.wait(POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - now))
    return ended, False, False


class _ExitWatch:
    """Sleeps until a child exits or a timeout passes: a pidfd wakes at once on exit, where the kernel has them.

    Without it every task would end up to one poll interval late, which dominates short tasks.
    """

    def __init__(self, pid: int) -> None:
        self.fd: int | None = None
        self.poller = select.poll()
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(pid)
            self.poller.register(self.fd, select.POLLIN)

    def close(self) -> None:
        """Release the pidfd."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def wait(self, timeout: float) -> None:
        """Return when the child has exited or after `timeout` seconds."""
        if self.fd is None:
            time.sleep(max(timeout, 0.0))
        else:
            self.poller.poll(max(timeout, 0.0) * 1000)


def _stop(child: Child, grace: float) -> Exit:
    """SIGTERM the tree, wait up to `grace` seconds, SIGKILL what is left, and reap the child."""
    descendants = _descendants(child.pid)
    signal_tree(child.pid, signal.SIGTERM, descendants)
    ended = child.wait(max(grace, 0.0))
    signal_tree(child.pid, signal.SIGKILL, descendants + _descendants(child.pid))
    if ended is None:
        ended = child.wait(None)
    assert ended is not None
    return ended


def _descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid`, including those that moved to another process group."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def signal_tree(pgid: int, signum: int, descendants: Iterable[psutil.Process]) -> None:
    """Send `signum` to process group `pgid` and to each listed descendant; a vanished target is success."""
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pgid, signum)
        except PermissionError:
            log.warning("process group %s: not permitted to send signal %s", pgid, signum)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(signum)


def kill_group(pgid: int) -> None:
    """SIGKILL a process group right away (the last resort at agent exit)."""
    signal_tree(pgid, signal.SIGKILL, _descendants(pgid))


def _result(ended: Exit, started_at: datetime, timed_out: bool, cancelled: bool) -> ProcessResult:
    """Turn a wait status into a ProcessResult."""
    code = os.waitstatus_to_exitcode(ended.status)
    return ProcessResult(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        cancelled=cancelled,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        user_cpu_seconds=ended.user_cpu_seconds,
        kernel_cpu_seconds=ended.kernel_cpu_seconds,
    )


def run_tool(argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60) -> ToolResult:
    """Run one of the agent's helper programs to completion; `input` goes to its stdin and is never logged."""
    env = {"PATH": TOOL_PATH, "LC_ALL": "C"}
    try:
        child = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        return ToolResult(TOOL_NOT_FOUND, f"{argv[0]}: program not found")
    except OSError as exc:
        return ToolResult(TOOL_NOT_FOUND, f"{argv[0]}: cannot start: {exc.strerror}")
    try:
        output, _ = child.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        child.communicate()
        log.warning("tool %s: still running after %.0fs, killed", argv[0], timeout)
        return ToolResult(TOOL_TIMED_OUT, f"{argv[0]}: timed out after {timeout:.0f}s")
    return ToolResult(child.returncode, output.decode(errors="replace").strip())


def kill_user_processes(uid: int) -> int:
    """SIGKILL every process running as `uid` (a task user about to be removed); how many were signalled."""
    if uid == 0 or uid == os.getuid():
        raise ValueError(f"refusing to kill every process of uid {uid}")
    killed = 0
    for candidate in psutil.process_iter(["uids"]):
        uids = candidate.info.get("uids")
        if uids is None or uid not in (uids.real, uids.effective):
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            candidate.send_signal(signal.SIGKILL)
            killed += 1
    return killed
