"""The launcher process: starts the agent's commands, reports how they end, and kills them if the agent dies.

The agent starts it once (`python -m nodeagent.launcherd`, see `nodeagent.launcher`) and talks to
it over a pipe pair, one JSON object per line. A start request names the argv, working directory,
environment, output files, the identity to run as and the cgroups to start in; the launcher answers
with the pid, or with the error that kept the command from starting (errno, strerror, filename), and
later, for every pid it started, with its wait status and CPU times.

Being small and single-threaded, it can do what the agent cannot do cheaply: start a command with
exactly one exec. The child is forked straight into the attempt's cgroups (the launcher moves itself
into them around the fork, then back to its own: no process of the command ever runs outside them).
A command that runs as another user is started by that identity's spawner (`nodeagent.spawner`), a
child of the launcher forked once per identity that starts commands with posix_spawn; the launcher
moves the spawner into the attempt's cgroups around the start instead of itself. Where no spawner
can serve, the launcher forks the command and switches to the task's user between fork and exec
(CPython does that in C, no Python runs in the child). The agent, many threads and a large heap,
would have to pay for a shell and `setpriv` instead.

When its request pipe closes, however the agent ended, it SIGKILLs the process group and descendants
of every command still running, reaps them and exits. A command whose leader already exited is not
followed any longer (what it left in its group is the agent's to stop). Running as root, it is the
child subreaper of its tree: the commands of a spawner that died are its children then.

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
import time
from typing import Any

from nodeagent.spawner import Fallback, Identity, Spawner, Unanswered, become_subreaper, exit_message

READ_SIZE = 65536
"""Bytes read from the request pipe at a time."""

MAX_SPAWNERS = 16
"""Spawners kept at once; past that an idle one is ended, or the launcher starts the command itself."""

SPAWNER_IDLE_SECONDS = 60.0
"""A spawner without commands for this long is ended."""

IDLE_CHECK_SECONDS = 10.0
"""How often idle spawners are looked for."""


class Launcherd:
    """The launcher's state: the commands it started that still run, and its spawners."""

    def __init__(self, requests: int, answers: int, *, spawners: bool = False) -> None:
        self.requests = requests
        self.answers = answers
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        """Commands the launcher forked itself."""
        self.spawned: dict[int, Spawner] = {}
        """Commands a spawner started (kept after it died: they are the launcher's children then)."""
        self.spawners: dict[Identity, Spawner] = {}
        self.use_spawners = spawners
        self.uid = os.getuid()

    def serve(self, wakeup: int) -> list[int]:
        """Answer requests and report exits until the request pipe closes; the pids killed then."""
        buffer = b""
        while True:
            spawners = list(self.spawners.values())
            timeout = IDLE_CHECK_SECONDS if spawners else None
            watched: list[int | Spawner] = [self.requests, wakeup, *spawners]
            readable, _, _ = select.select(watched, [], [], timeout)
            if wakeup in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wakeup, READ_SIZE)
                self.reap()
            for spawner in spawners:
                if spawner in readable:
                    self.hear(spawner)
            if self.requests in readable:
                chunk = os.read(self.requests, READ_SIZE)
                if not chunk:
                    return self.kill_all()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.answer(json.loads(line))
                self.reap()
            self.retire_idle()

    def answer(self, request: dict[str, Any]) -> None:
        """Start one command and say how that went."""
        try:
            pid = self.start(request)
        except OSError as exc:
            filename = None if exc.filename is None else os.fsdecode(exc.filename)
            self.send({"id": request["id"], "errno": exc.errno, "strerror": exc.strerror, "filename": filename})
            return
        self.send({"id": request["id"], "pid": pid})

    def start(self, request: dict[str, Any]) -> int:
        """Start the command inside its cgroups, as its user, in a session of its own; its pid."""
        uid = request.get("uid")
        switch = uid is not None and uid != self.uid
        with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
            if switch:
                pid = self.spawn(request, out.fileno(), err.fileno())
                if pid is not None:
                    return pid
            with inside(request.get("cgroups") or []):
                child = subprocess.Popen(
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
        self.children[child.pid] = child
        return child.pid

    def spawn(self, request: dict[str, Any], out: int, err: int) -> int | None:
        """Start the command through its identity's spawner; None when the launcher must start it itself."""
        identity = (
            int(request["uid"]),
            int(request["gid"]),
            tuple(int(group) for group in request.get("groups") or ()),
        )
        spawner = self.spawner_for(identity)
        if spawner is None:
            return None
        try:
            with inside(request.get("cgroups") or [], spawner.pid):
                pid = spawner.start(request, out, err, self.report)
        except (Fallback, ProcessLookupError):
            return None
        except Unanswered:
            spawner.kill()
            self.lose(spawner)
            raise
        self.spawned[pid] = spawner
        return pid

    def spawner_for(self, identity: Identity) -> Spawner | None:
        """The running spawner of `identity`, started when there is none; None when no spawner can serve."""
        spawner = self.spawners.get(identity)
        if spawner is not None or not self.use_spawners:
            return spawner
        if len(self.spawners) >= MAX_SPAWNERS and not self.retire_idle(at_once=True):
            return None
        spawner = Spawner(identity)
        if not spawner.ready():
            spawner.kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(spawner.pid, 0)
            return None
        self.spawners[identity] = spawner
        return spawner

    def hear(self, spawner: Spawner) -> None:
        """Take one message from a spawner: an exit to report, or the news that it is gone."""
        message = spawner.receive()
        if message is None:
            self.lose(spawner)
        elif "exited" in message:
            self.report(message)

    def report(self, message: dict[str, Any]) -> None:
        """Pass a spawner's exit report on to the agent."""
        spawner = self.spawned.pop(int(message["exited"]), None)
        if spawner is not None:
            spawner.forget(int(message["exited"]))
        self.send(message)

    def lose(self, spawner: Spawner) -> None:
        """A spawner is gone: its running commands become the launcher's children; those it did not report are lost."""
        spawner.close()
        if self.spawners.get(spawner.identity) is spawner:
            del self.spawners[spawner.identity]
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spawner.pid, 0)
        for pid in sorted(spawner.commands):
            try:
                found, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                self.spawned.pop(pid, None)
                self.send({"exited": pid, "lost": True})
                continue
            if found:
                self.spawned.pop(pid, None)
                self.send(exit_message(pid, status, usage))
        spawner.commands.clear()

    def retire_idle(self, *, at_once: bool = False) -> bool:
        """End a spawner without commands for a while (any idle one, `at_once`); whether one was ended."""
        now = time.monotonic()
        for spawner in list(self.spawners.values()):
            if spawner.commands or (not at_once and now - spawner.idle_since < SPAWNER_IDLE_SECONDS):
                continue
            # Killed rather than told: one its user stopped would never read the end of its socket.
            spawner.kill()
            del self.spawners[spawner.identity]
            return True
        return False

    def reap(self) -> None:
        """Report every command that exited and was a child of the launcher; reap spawners and orphans too."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if os.WIFSTOPPED(status):
                self.stopped(pid)
                continue
            child = self.children.pop(pid, None)
            spawner = self.spawned.pop(pid, None)
            if child is not None:
                child.returncode = os.waitstatus_to_exitcode(status)
            if spawner is not None:
                spawner.forget(pid)
            if child is not None or spawner is not None:
                self.send(exit_message(pid, status, usage))

    def stopped(self, pid: int) -> None:
        """A child was stopped: a spawner is killed (its commands would never be reported), a command is left be."""
        for spawner in list(self.spawners.values()):
            if spawner.pid == pid:
                spawner.kill()
                self.lose(spawner)

    def kill_all(self) -> list[int]:
        """SIGKILL the tree of every command still running and reap it; their pids."""
        running = sorted([*self.children, *self.spawned])
        if running:
            # Imported only now: the agent is gone and the process's size no longer matters.
            from nodeagent.process import kill_group  # noqa: PLC0415

            for pid in running:
                kill_group(pid)
        for spawner in self.spawners.values():
            spawner.kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(spawner.pid, 0)
        for child in self.children.values():
            child.wait()
        for pid in self.spawned:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        self.spawned.clear()
        self.spawners.clear()
        return running

    def send(self, message: dict[str, Any]) -> None:
        """Write one answer line."""
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.answers, data) :]


@contextlib.contextmanager
def inside(moves: list[list[str]], pid: int = 0) -> Any:
    """Put process `pid` (0: this one) in each `[enter, leave]` pair's `enter` cgroup.procs file, then back in `leave`.

    A child it forks meanwhile starts in the `enter` cgroups. Should entering one fail, the ones
    entered are left again and the error is raised. A process that is gone by then is not moved back.
    """
    entered: list[str] = []
    try:
        for enter, leave in moves:
            write_pid(enter, pid)
            entered.append(leave)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            for leave in entered:
                write_pid(leave, pid)


def write_pid(procs_file: str, pid: int = 0) -> None:
    """Move process `pid` (0: this one) into the cgroup whose `cgroup.procs` is `procs_file`."""
    fd = os.open(procs_file, os.O_WRONLY)
    try:
        os.write(fd, str(pid or os.getpid()).encode())
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
    launcher = Launcherd(sys.stdin.fileno(), sys.stdout.fileno(), spawners=os.getuid() == 0 and become_subreaper())
    killed = launcher.serve(wakeup_read)
    if killed:
        print(f"nodeagent launcher: the agent exited; killed the process groups of {killed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
