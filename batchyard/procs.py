"""The one place in this package that starts processes, and stops the ones it started.

Children get a new session (so a terminal's Ctrl-C reaches only `batchyard up`,
which then stops them in order) and a parent-death signal (so they also go away
when `batchyard up` itself is killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
"""prctl(2) option: signal this process when its parent thread exits."""

DEATH_SIGNAL = signal.SIGTERM
"""Sent to a child when `up` dies; SIGTERM so an agent can still stop its own task processes."""

TAIL_BYTES = 4000
"""How much of a child's log an error message shows."""


@dataclass
class Child:
    """A long-running process started by `start`, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's process id (also its process group and session id)."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the child has not exited."""
        return self.process.poll() is None

    def tail(self) -> str:
        """The last few lines of the child's log."""
        return log_tail(self.log_path)


def log_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The end of a log file, decoded leniently; empty when there is no file."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _death_signal_setter(parent_pid: int) -> Callable[[], None]:
    """A preexec function that asks the kernel to signal the child when `parent_pid` exits."""

    def setter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setter


def start(name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None) -> Child:
    """Start `argv` in its own session with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_death_signal_setter(os.getpid()),
        )
    log.info("started %s (pid %s), log %s", name, process.pid, log_path)
    return Child(name=name, process=process, log_path=log_path)


def _signal_group(child: Child, sig: signal.Signals) -> None:
    """Send `sig` to the child's process group, which only exists while something we started is in it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


def _wait_all(children: Sequence[Child], deadline: float) -> list[Child]:
    """Wait until every child has exited or the deadline passes; return the ones still running."""
    running = [child for child in children if child.alive()]
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [child for child in running if child.alive()]
    return running


def stop_all(children: Sequence[Child], grace: float) -> None:
    """SIGTERM each child's group, wait up to `grace` seconds, then SIGKILL what is left."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    for child in _wait_all(children, time.monotonic() + grace):
        log.warning("%s (pid %s) did not stop within %.0f s; killing it", child.name, child.pid, grace)
        _signal_group(child, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=grace)
        # Reap anything left in the group (a grandchild that ignored SIGTERM).
        _signal_group(child, signal.SIGKILL)


def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion, capturing its output as text."""
    log.info("running %s", " ".join(argv))
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
