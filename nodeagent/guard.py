"""A watchdog process that kills the attempts' process trees when the agent dies without stopping them.

Task commands run in sessions of their own, so an agent killed with SIGKILL (or by the OOM killer) would
leave them running, no longer leased: the controller requeues their tasks and two attempts of one task
would run at once. The agent therefore starts this guard (`python -m nodeagent.guard`) with a pipe on its
standard input and writes `+<pid>` when an attempt's command starts and `-<pid>` once it is gone. When the
pipe closes, however the agent ended, the guard SIGKILLs every process group still registered and the
descendants of its leader, then exits. It holds a pidfd per leader, so a recycled pid is never signalled.
The write end of the pipe is close-on-exec, so no task inherits it; an agent that re-executes itself
(`reboot`) closes it too, and its new process starts a new guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from typing import IO

from nodeagent.process import TOOL_PATH, kill_group

log = logging.getLogger(__name__)

GUARD_MODULE = "nodeagent.guard"
"""Module the guard process runs."""

STOP_WAIT_SECONDS = 5.0
"""How long `close` waits for the guard to exit after closing its pipe."""


def guard_env() -> dict[str, str]:
    """The guard's environment: a fixed PATH and the agent's PYTHONPATH, none of the agent's settings or secrets."""
    env = {"PATH": TOOL_PATH, "LC_ALL": "C"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


class Guard:
    """The agent's end of the guard: starts the process on first use and keeps it told which groups run."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self._argv = argv or [sys.executable, "-m", GUARD_MODULE]
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._pids: set[int] = set()
        self._closed = False

    def watch(self, pid: int) -> None:
        """Register the leader (and process group id) of an attempt's command."""
        with self._lock:
            self._pids.add(pid)
            self._send(f"+{pid}\n")

    def forget(self, pid: int) -> None:
        """Unregister a group whose attempt ended."""
        with self._lock:
            self._pids.discard(pid)
            self._send(f"-{pid}\n")

    def close(self) -> None:
        """Close the pipe (the guard kills what is still registered) and wait for the guard to exit."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            _stdin(child).close()
        try:
            child.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("guard %s: still running after its pipe closed; killing it", child.pid)
            child.kill()
            child.wait()

    def _send(self, line: str) -> None:
        """Write one line to the guard, (re)starting it when needed; a failure is logged, never raised."""
        if self._closed:
            return
        try:
            child = self._ensure()
            stdin = _stdin(child)
            stdin.write(line.encode())
            stdin.flush()
        except OSError as exc:
            log.warning("guard: cannot reach the guard process, it will be restarted: %s", exc)
            self._child = None

    def _ensure(self) -> subprocess.Popen[bytes]:
        """The running guard; a new one (told every registered pid) when there is none or it died."""
        if self._child is not None and self._child.poll() is None:
            return self._child
        if self._child is not None:
            log.warning("guard %s exited with code %s; starting a new one", self._child.pid, self._child.returncode)
        child = subprocess.Popen(
            self._argv, stdin=subprocess.PIPE, env=guard_env(), start_new_session=True, close_fds=True
        )
        self._child = child
        stdin = _stdin(child)
        for pid in sorted(self._pids):
            stdin.write(f"+{pid}\n".encode())
        stdin.flush()
        log.info("guard %s started", child.pid)
        return child


def _stdin(child: subprocess.Popen[bytes]) -> IO[bytes]:
    """The pipe to a guard started with stdin=PIPE."""
    assert child.stdin is not None
    return child.stdin


class Watched:
    """The guard process's side: pidfds of the registered leaders."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def apply(self, line: str) -> None:
        """Apply one `+pid` or `-pid` line; anything else is ignored."""
        text = line.strip()
        sign, number = text[:1], text[1:]
        if not number.isdigit():
            return
        pid = int(number)
        if sign == "+" and pid not in self.fds:
            with contextlib.suppress(OSError):
                self.fds[pid] = os.pidfd_open(pid)
        elif sign == "-" and pid in self.fds:
            os.close(self.fds.pop(pid))

    def kill_all(self) -> list[int]:
        """SIGKILL the group of every registered leader that has not exited; the pids signalled."""
        killed = []
        for pid, fd in sorted(self.fds.items()):
            if not _exited(fd):
                kill_group(pid)
                killed.append(pid)
            os.close(fd)
        self.fds.clear()
        return killed


def _exited(pidfd: int) -> bool:
    """True when the process behind `pidfd` has exited."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def run(stream: IO[bytes]) -> list[int]:
    """Follow registrations on `stream` until it closes, then kill what is left; the pids killed."""
    watched = Watched()
    for raw in stream:
        watched.apply(raw.decode(errors="replace"))
    return watched.kill_all()


def main() -> int:
    """Entry point of the guard process."""
    # Ctrl-C in a terminal reaches the agent, which stops its attempts itself; the guard waits for the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    killed = run(sys.stdin.buffer)
    if killed:
        print(f"nodeagent guard: the agent exited; killed the process groups of {killed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
