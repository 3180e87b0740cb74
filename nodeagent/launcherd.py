"""The launcher process: starts the agent's commands, reports how they end, and kills them if the agent dies.

The agent starts it once (`python -m nodeagent.launcherd`, see `nodeagent.launcher`) and talks to
it over a pipe pair, one JSON object per line. A start request names the argv, working directory,
environment, output files, the identity to run as and the cgroups to start in; the launcher answers
with the pid, or with the error that kept the command from starting (errno, strerror, filename), and
later, for every pid it started, with its wait status and CPU times.

Being small and single-threaded, it can do what the agent cannot do cheaply: start a command with
exactly one exec. The child is forked straight into the attempt's cgroups (the launcher moves itself
into them around the fork, then back to its own: no process of the command ever runs outside them),
and switches to the task's user between fork and exec (CPython does that in C, no Python runs in the
child). The agent, many threads and a large heap, would have to pay for a shell and `setpriv` instead.

When its request pipe closes, however the agent ended, it SIGKILLs the process group and descendants
of every command still running, reaps them and exits. A command whose leader already exited is not
followed any longer (what it left in its group is the agent's to stop).

Only the standard library is imported at start, to keep the process small: every fork copies its
page tables.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from typing import Any

READ_SIZE = 65536
"""Bytes read from the request pipe at a time."""


class Launcherd:
    """The launcher's state: the commands it started that still run."""

    def __init__(self, requests: int, answers: int) -> None:
        self.requests = requests
        self.answers = answers
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.uid = os.getuid()

    def serve(self, wakeup: int) -> list[int]:
        """Answer requests and report exits until the request pipe closes; the pids killed then."""
        buffer = b""
        while True:
            readable, _, _ = select.select([self.requests, wakeup], [], [])
            if wakeup in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wakeup, READ_SIZE)
                self.reap()
            if self.requests in readable:
                chunk = os.read(self.requests, READ_SIZE)
                if not chunk:
                    return self.kill_all()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.answer(json.loads(line))
                self.reap()

    def answer(self, request: dict[str, Any]) -> None:
        """Start one command and say how that went."""
        try:
            child = self.start(request)
        except OSError as exc:
            filename = None if exc.filename is None else os.fsdecode(exc.filename)
            self.send({"id": request["id"], "errno": exc.errno, "strerror": exc.strerror, "filename": filename})
            return
        self.children[child.pid] = child
        self.send({"id": request["id"], "pid": child.pid})

    def start(self, request: dict[str, Any]) -> subprocess.Popen[bytes]:
        """Fork and exec the command inside its cgroups, as its user, in a session of its own."""
        uid = request.get("uid")
        switch = uid is not None and uid != self.uid
        with (
            open(request["stdout"], "wb") as out,
            open(request["stderr"], "wb") as err,
            inside(request.get("cgroups") or []),
        ):
            return subprocess.Popen(
                request["argv"],
                cwd=request["cwd"],
                env=request["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
                user=uid if switch else None,
                group=request.get("gid") if switch else None,
                extra_groups=request.get("groups") if switch else None,
            )

    def reap(self) -> None:
        """Report every started command that exited."""
        for pid in list(self.children):
            found, status, usage = os.wait4(pid, os.WNOHANG)
            if found == 0:
                continue
            child = self.children.pop(pid)
            child.returncode = os.waitstatus_to_exitcode(status)
            self.send({"exited": pid, "status": status, "user": usage.ru_utime, "kernel": usage.ru_stime})

    def kill_all(self) -> list[int]:
        """SIGKILL the tree of every command still running and reap it; their pids."""
        running = sorted(self.children)
        if running:
            # Imported only now: the agent is gone and the process's size no longer matters.
            from nodeagent.process import kill_group  # noqa: PLC0415

            for pid in running:
                kill_group(pid)
            for child in self.children.values():
                child.wait()
        self.children.clear()
        return running

    def send(self, message: dict[str, Any]) -> None:
        """Write one answer line."""
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.answers, data) :]


@contextlib.contextmanager
def inside(moves: list[list[str]]) -> Any:
    """Put this process in each `[enter, leave]` pair's `enter` cgroup.procs file, then back in `leave`.

    A child forked meanwhile starts in the `enter` cgroups. Should entering one fail, the ones
    entered are left again and the error is raised.
    """
    entered: list[str] = []
    try:
        for enter, leave in moves:
            write_pid(enter)
            entered.append(leave)
        yield
    finally:
        for leave in entered:
            write_pid(leave)


def write_pid(procs_file: str) -> None:
    """Move this process into the cgroup whose `cgroup.procs` is `procs_file`."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)


def main() -> int:
    """Entry point of the launcher process."""
    # Ctrl-C in a terminal reaches the agent, which stops its commands itself; the launcher waits for the pipe.
    # A handler, not SIG_IGN: an ignored signal would stay ignored in every command started.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    wakeup_read, wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    killed = Launcherd(sys.stdin.fileno(), sys.stdout.fileno()).serve(wakeup_read)
    if killed:
        print(f"nodeagent launcher: the agent exited; killed the process groups of {killed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
