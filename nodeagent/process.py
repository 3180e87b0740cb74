"""The only module that starts processes.

A command runs without a shell, in a new session (so in its own process group),
with stdout and stderr written straight to files. A command that runs as
another user starts through `setpriv`, which switches the identity right before
exec: CPython can then start it with vfork instead of copying the agent's
memory map with fork (only where `setpriv` is missing does Popen switch users
itself, through fork). Stopping it sends SIGTERM to
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
import resource
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from nodeagent.errors import ProcessStartError

if TYPE_CHECKING:
    # Only a type here: identity imports the account tools, which run through this module.
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

SETPRIV = shutil.which("setpriv", path=TOOL_PATH)
"""util-linux's setpriv, which switches uid, gid and groups and then execs; None where the host lacks it."""


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


@dataclass
class _Exit:
    """Raw wait status and resource usage of a reaped child."""

    status: int
    rusage: resource.struct_rusage


def run(spec: ProcessSpec) -> ProcessResult:
    """Run a process to completion, timeout or cancellation, leaving none of its tree behind."""
    started_at = datetime.now(UTC)
    child = _start(spec)
    if spec.on_start is not None:
        spec.on_start(child.pid)
    deadline = None if spec.timeout is None else time.monotonic() + max(spec.timeout, 0.0)
    reaped, timed_out, cancelled = _wait(child, spec, deadline)
    if reaped is None:
        reaped = _stop(child, spec.kill_grace)
    elif not spec.keep_group:
        # Whatever the command left running in its group is stopped with it.
        signal_tree(child.pid, signal.SIGKILL, descendants=())
    return _result(reaped, started_at, timed_out, cancelled)


def _start(spec: ProcessSpec) -> subprocess.Popen[bytes]:
    """Start the process, mapping start failures to ProcessStartError."""
    if not spec.argv:
        raise ProcessStartError("CommandLaunchFailed", "the command line is empty")
    switch = spec.run_as is not None and spec.run_as.uid != os.getuid()
    run_as = spec.run_as if switch else None
    argv = list(spec.argv)
    if run_as is not None and SETPRIV is not None:
        argv = switch_identity_argv(SETPRIV, run_as, resolve_program(argv[0], spec.env.get("PATH", ""), spec.cwd))
        argv += spec.argv[1:]
        run_as = None
    try:
        with open(spec.stdout_path, "wb") as out, open(spec.stderr_path, "wb") as err:
            return subprocess.Popen(
                argv,
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
    except FileNotFoundError as exc:
        if exc.filename is not None and str(exc.filename) not in (spec.argv[0], os.fsdecode(spec.argv[0])):
            raise ProcessStartError("CommandLaunchFailed", f"cannot start {spec.argv[0]!r}: {exc}") from exc
        raise ProcessStartError("CommandProgramNotFound", f"program {spec.argv[0]!r} was not found") from exc
    except OSError as exc:
        raise ProcessStartError("CommandLaunchFailed", f"cannot start {spec.argv[0]!r}: {exc}") from exc


def switch_identity_argv(setpriv: str, run_as: RunAs, program: str) -> list[str]:
    """`setpriv` arguments that become `run_as` (uid, gid, exactly its supplementary groups) and exec `program`."""
    groups = f"--groups={','.join(str(gid) for gid in run_as.groups)}" if run_as.groups else "--clear-groups"
    return [setpriv, f"--reuid={run_as.uid}", f"--regid={run_as.gid}", groups, "--", program]


def resolve_program(program: str, search_path: str, cwd: Path) -> str:
    """The program to exec, checked to exist; raised as the launch failure otherwise.

    A path is made absolute against `cwd`. A bare name is returned as it is, once some directory of
    `search_path` has it: the exec that runs it (as the task's user) searches the path itself, passing
    over directories that user cannot reach, as execvp does.
    """
    if "/" in program:
        candidate = str(cwd / program)
        if not os.path.isfile(candidate):
            raise ProcessStartError("CommandProgramNotFound", f"program {program!r} was not found")
        if not os.access(candidate, os.X_OK):
            raise ProcessStartError("CommandLaunchFailed", f"cannot start {program!r}: permission denied")
        return candidate
    if shutil.which(program, path=search_path) is None:
        raise ProcessStartError("CommandProgramNotFound", f"program {program!r} was not found")
    return program


def _wait(child: subprocess.Popen[bytes], spec: ProcessSpec, deadline: float | None) -> tuple[_Exit | None, bool, bool]:
    """Wait for exit, the deadline or cancellation; returns (exit or None, timed_out, cancelled)."""
    with _ExitWatch(child.pid) as watch:
        while True:
            reaped = _reap(child, block=False)
            if reaped is not None:
                return reaped, False, False
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.info("process %s: wall-clock limit reached, stopping its process group", child.pid)
                return None, True, False
            if spec.cancel is not None and spec.cancel.is_set():
                log.info("process %s: cancelled, stopping its process group", child.pid)
                return None, False, True
            watch.wait(POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - now))


class _ExitWatch:
    """Sleeps until a child exits or a timeout passes: a pidfd wakes at once on exit, where the kernel has them.

    Without it every task would end up to one poll interval late, which dominates short tasks.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        self.poller = select.poll()

    def __enter__(self) -> _ExitWatch:
        with contextlib.suppress(OSError, AttributeError):
            self.fd = os.pidfd_open(self.pid)
            self.poller.register(self.fd, select.POLLIN)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def wait(self, timeout: float) -> None:
        """Return when the child has exited or after `timeout` seconds."""
        if self.fd is None:
            time.sleep(max(timeout, 0.0))
        else:
            self.poller.poll(max(timeout, 0.0) * 1000)


def _reap(child: subprocess.Popen[bytes], *, block: bool) -> _Exit | None:
    """Reap the child with wait4 (for its CPU times); None while it still runs."""
    pid, status, rusage = os.wait4(child.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    # Tell Popen the child is gone so it never waits on a reused pid.
    child.returncode = os.waitstatus_to_exitcode(status)
    return _Exit(status=status, rusage=rusage)


def _stop(child: subprocess.Popen[bytes], grace: float) -> _Exit:
    """SIGTERM the tree, wait up to `grace` seconds, SIGKILL what is left, and reap the child."""
    descendants = _descendants(child.pid)
    signal_tree(child.pid, signal.SIGTERM, descendants)
    deadline = time.monotonic() + grace
    reaped = _reap(child, block=False)
    while reaped is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        reaped = _reap(child, block=False)
    signal_tree(child.pid, signal.SIGKILL, descendants + _descendants(child.pid))
    return reaped if reaped is not None else _reap_blocking(child)


def _reap_blocking(child: subprocess.Popen[bytes]) -> _Exit:
    """Reap a child that was sent SIGKILL."""
    reaped = _reap(child, block=True)
    assert reaped is not None
    return reaped


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


def _result(reaped: _Exit, started_at: datetime, timed_out: bool, cancelled: bool) -> ProcessResult:
    """Turn a wait status into a ProcessResult."""
    code = os.waitstatus_to_exitcode(reaped.status)
    rusage = reaped.rusage
    return ProcessResult(
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        timed_out=timed_out,
        cancelled=cancelled,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        user_cpu_seconds=rusage.ru_utime,
        kernel_cpu_seconds=rusage.ru_stime,
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
