"""The agent's end of the launcher process (`nodeagent.launcherd`): commands started with one exec.

`Launcher.run` is the agent's `process.run`: it asks the launcher to start the command and follows
it as `process.run` follows any child (timeout, cancellation, stopping the tree), learning its exit
from the launcher. A reader thread takes the launcher's answers: start results go to the caller
waiting for them, exits to the child they end.

The launcher is started on first use, with a fixed PATH and none of the agent's settings or secrets
in its environment. Should it die, every command it was following is killed (its exit could no
longer be known: `ProcessLost`), so is a start it had received but not answered (the command may
have started: it is not started again), and the next start begins a new launcher. Closing it (agent stop)
closes its request pipe: it kills what still runs and exits. The pipe's write end is close-on-exec,
so an agent that re-executes itself (`reboot`) closes it too, and so does one killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from nodeagent import process
from nodeagent.errors import ProcessLost, ProcessStartError
from nodeagent.process import Exit, ProcessResult, ProcessSpec

log = logging.getLogger(__name__)

LAUNCHER_MODULE = "nodeagent.launcherd"
"""Module the launcher process runs."""

STOP_WAIT_SECONDS = 5.0
"""How long `close` waits for the launcher to exit after closing its pipe."""


def launcher_env() -> dict[str, str]:
    """The launcher's environment: a fixed PATH and the agent's PYTHONPATH, none of its settings or secrets."""
    env = {"PATH": process.TOOL_PATH, "LC_ALL": "C"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@dataclass
class _Answer:
    """Something the reader thread hands to one waiting thread: a message, or the news the launcher died."""

    ready: threading.Event = field(default_factory=threading.Event)
    message: dict[str, Any] | None = None
    ended: _Answer | None = None
    """For a start that succeeded: where the command's exit will arrive."""

    def give(self, message: dict[str, Any] | None, ended: _Answer | None = None) -> None:
        """Hand `message` over (None: the launcher died)."""
        self.message = message
        self.ended = ended
        self.ready.set()


class LaunchedChild:
    """A command the launcher started: its exit arrives through the launcher's answers."""

    def __init__(self, pid: int, ended: _Answer) -> None:
        self._pid = pid
        self._ended = ended

    @property
    def pid(self) -> int:
        """The command's pid (and process group id)."""
        return self._pid

    def wait(self, timeout: float | None) -> Exit | None:
        """Its exit once the launcher reported it; raises ProcessLost when the launcher died first."""
        if not self._ended.ready.wait(timeout):
            return None
        message = self._ended.message
        if message is None:
            raise ProcessLost("ProcessLauncherLost", "the agent's process launcher exited while the command ran")
        return Exit(int(message["status"]), float(message["user"]), float(message["kernel"]))


class _Link:
    """One running launcher process: its pipes, the starts awaiting an answer and the children it follows."""

    def __init__(self, argv: list[str]) -> None:
        self.child = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=launcher_env(),
            start_new_session=True,
            close_fds=True,
        )
        self.lock = threading.Lock()
        self.starts: dict[int, _Answer] = {}
        self.exits: dict[int, _Answer] = {}
        self.next_id = 0
        self.alive = True
        self.reader = threading.Thread(target=self._read, name="launcher-reader", daemon=True)
        self.reader.start()
        log.info("launcher %s started", self.child.pid)

    def start(self, request: dict[str, Any]) -> _Answer | None:
        """Send a start request and wait for its answer; None when the launcher was gone before it was sent.

        Raises ProcessLost when the launcher died after the request was sent: it may have started the
        command, so it is not started again (the attempt's cgroup, when there is one, holds what it left).
        """
        answer = _Answer()
        with self.lock:
            if not self.alive:
                return None
            self.next_id += 1
            self.starts[self.next_id] = answer
            try:
                _pipe(self.child.stdin).write((json.dumps({**request, "id": self.next_id}) + "\n").encode())
                _pipe(self.child.stdin).flush()
            except OSError as exc:
                log.warning("launcher %s: cannot send a start request: %s", self.child.pid, exc)
                self.starts.pop(self.next_id)
                return None
        answer.ready.wait()
        if answer.message is None:
            raise ProcessLost("ProcessLauncherLost", "the agent's process launcher exited while starting the command")
        return answer

    def _read(self) -> None:
        """Hand each answer line to its waiter until the launcher's output ends, then fail whoever still waits."""
        for line in _pipe(self.child.stdout):
            message = json.loads(line)
            exit_answer = None
            with self.lock:
                if "exited" in message:
                    answer = self.exits.pop(int(message["exited"]), None)
                else:
                    if "pid" in message:
                        exit_answer = self.exits[int(message["pid"])] = _Answer()
                    answer = self.starts.pop(int(message["id"]), None)
            if answer is not None:
                # An exit the launcher could not learn (the spawner that reaped the command died) is a lost command.
                answer.give(None if message.get("lost") else message, exit_answer)
        with self.lock:
            self.alive = False
            waiting = [*self.starts.values(), *self.exits.values()]
            self.starts.clear()
            self.exits.clear()
        for answer in waiting:
            answer.give(None)

    def close(self) -> None:
        """Close the request pipe and wait for the launcher to exit."""
        with contextlib.suppress(OSError):
            _pipe(self.child.stdin).close()
        try:
            self.child.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("launcher %s: still running after its pipe closed; killing it", self.child.pid)
            self.child.kill()
            self.child.wait()
        self.reader.join(timeout=STOP_WAIT_SECONDS)
        with contextlib.suppress(OSError):
            _pipe(self.child.stdout).close()


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """A pipe of a launcher started with stdin and stdout as pipes."""
    assert stream is not None
    return stream


class Launcher:
    """Starts commands through the launcher process, starting it (again) whenever it is not running."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self._argv = argv or [sys.executable, "-m", LAUNCHER_MODULE]
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The pid of the launcher process, while one runs."""
        link = self._link
        return link.child.pid if link is not None and link.alive else None

    def run(self, spec: ProcessSpec) -> ProcessResult:
        """`process.run` with the command started by the launcher."""
        return process.run(spec, self.start)

    def start(self, spec: ProcessSpec) -> LaunchedChild:
        """Start the command of `spec`; raises ProcessStartError when it cannot start."""
        for _ in range(2):
            link = self._current()
            answer = link.start(request(spec))
            if answer is None:
                log.warning("launcher %s exited; starting a new one", link.child.pid)
                continue
            message = answer.message
            assert message is not None, "an answered start carries its message"
            if answer.ended is not None:
                return LaunchedChild(int(message["pid"]), answer.ended)
            error = OSError(message["errno"], message["strerror"], message.get("filename"))
            raise process.start_error(spec.argv[0], error)
        raise ProcessStartError("CommandLaunchFailed", "the agent's process launcher keeps exiting")

    def close(self) -> None:
        """Stop the launcher (it kills what still runs); later starts fail."""
        with self._lock:
            self._closed = True
            link, self._link = self._link, None
        if link is not None:
            link.close()

    def _current(self) -> _Link:
        """The running launcher; a new one when there is none or the last one died."""
        with self._lock:
            if self._closed:
                raise ProcessStartError("CommandLaunchFailed", "the agent is stopping")
            if self._link is None or not self._link.alive:
                if self._link is not None:
                    self._link.close()
                self._link = _Link(self._argv)
            return self._link


def request(spec: ProcessSpec) -> dict[str, Any]:
    """The launcher's start request for `spec`."""
    run_as = spec.run_as
    cgroup = spec.cgroup
    return {
        "argv": list(spec.argv),
        "cwd": str(spec.cwd),
        "env": dict(spec.env),
        "stdout": str(spec.stdout_path),
        "stderr": str(spec.stderr_path),
        "uid": None if run_as is None else run_as.uid,
        "gid": None if run_as is None else run_as.gid,
        "groups": None if run_as is None else list(run_as.groups),
        "cgroups": [] if cgroup is None else [[str(enter), str(leave)] for enter, leave in cgroup.moves],
    }
