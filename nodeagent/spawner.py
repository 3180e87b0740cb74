"""Spawners: children of the launcher that each start one identity's commands with posix_spawn.

CPython cannot use vfork for a child that must switch users: the launcher's page tables are copied
for every such start and thrown away by the exec, which costs more than the command `/bin/true`
itself. A spawner is forked from the launcher once per identity (uid, gid, groups), drops to that
identity for good and starts each command with `posix_spawn` (vfork: nothing copied).

The launcher keeps everything that needs root. It opens the output files and hands them over with
the request (SCM_RIGHTS over a SOCK_SEQPACKET pair), and moves the spawner into the attempt's
cgroups around each start as it moved itself before, so no process of a command ever runs outside
them. The spawner enters the working directory, starts the command in a new session with stdin on
/dev/null, answers with its pid, reaps it and reports its wait status and CPU times.

The spawner runs as its user, so that user's processes can signal it; they cannot trace it (it is
not dumpable). The launcher is the child subreaper of its tree: when a spawner dies, its commands
become the launcher's children and it reaps them itself. A spawner that is stopped, or that does not
answer a start in time, is killed (that start fails: the command may have started). Where the
spawner cannot do what the launcher's own fork would (a working directory only root may enter, a
request too large for one message), the launcher starts the command itself.

Only the standard library is used: this module runs inside the launcher.
"""

from __future__ import annotations

# array (socket's fd passing) and resource (wait4's usage) are imported by the standard library on
# first use; a spawner running as its user may not be allowed to read the Python installation then.
import array  # noqa: F401
import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Identity = tuple[int, int, tuple[int, ...]]
"""uid, gid and supplementary groups."""

Message = dict[str, Any]

MESSAGE_LIMIT = 65536
"""Largest request a spawner takes; a larger one is started by the launcher itself."""

ANSWER_SECONDS = 10.0
"""How long the launcher waits for a spawner to answer before killing it."""

STOP_CHECK_SECONDS = 0.5
"""How often a launcher waiting for an answer checks that the spawner was not stopped."""

READY: Message = {"ready": True}
"""What a spawner sends once it runs as its identity."""

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
"""Signals Python ignores that a command starts with at their default (as subprocess restores them)."""


class Fallback(Exception):
    """The spawner did not take the request; the launcher starts the command itself."""


class Unanswered(OSError):
    """The spawner took the request but died or stalled before answering: the command may have started."""


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants; False where the kernel does not allow it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Spawner:
    """The launcher's end of one spawner process."""

    def __init__(self, identity: Identity) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _spawner_main(theirs, identity)
        theirs.close()
        self.pid = pid
        self.identity = identity
        self.socket = ours
        self.commands: set[int] = set()
        self.idle_since = time.monotonic()

    def fileno(self) -> int:
        """The socket, for select."""
        return self.socket.fileno()

    def ready(self) -> bool:
        """Wait for the spawner to say it runs as its identity; False when it could not."""
        readable, _, _ = select.select([self.socket], [], [], ANSWER_SECONDS)
        return bool(readable) and self.receive() == READY

    def start(self, request: Message, out: int, err: int, on_exit: Callable[[Message], None]) -> int:
        """Have the command started; its pid. Exits reported meanwhile go to `on_exit`.

        Raises Fallback when the request was not taken, OSError when the command could not start,
        Unanswered when the spawner took the request and then died or stalled.
        """
        payload = json.dumps({key: request[key] for key in ("argv", "cwd", "env")}).encode()
        if len(payload) > MESSAGE_LIMIT:
            raise Fallback("request too large")
        try:
            socket.send_fds(self.socket, [payload], [out, err])
        except OSError as exc:
            raise Fallback(f"spawner {self.pid} gone") from exc
        deadline = time.monotonic() + ANSWER_SECONDS
        while True:
            wait = min(max(deadline - time.monotonic(), 0.0), STOP_CHECK_SECONDS)
            readable, _, _ = select.select([self.socket], [], [], wait)
            if not readable and not self.stopped() and time.monotonic() < deadline:
                continue
            message = self.receive() if readable else None
            if message is None:
                raise Unanswered(errno.ETIMEDOUT, f"the spawner of uid {self.identity[0]} did not answer")
            if "exited" in message:
                on_exit(message)
                continue
            if "fallback" in message:
                raise Fallback(message["fallback"])
            if "pid" in message:
                self.commands.add(int(message["pid"]))
                return int(message["pid"])
            raise OSError(message["errno"], message["strerror"], message.get("filename"))

    def stopped(self) -> bool:
        """Whether the spawner is stopped (by a signal from one of its user's processes)."""
        try:
            return os.waitid(os.P_PID, self.pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return False

    def forget(self, pid: int) -> None:
        """A command of this spawner was reaped."""
        self.commands.discard(pid)
        if not self.commands:
            self.idle_since = time.monotonic()

    def receive(self) -> Message | None:
        """The next message; None once the spawner is gone."""
        try:
            data = self.socket.recv(MESSAGE_LIMIT)
        except OSError:
            return None
        return json.loads(data) if data else None

    def close(self) -> None:
        """Close the socket (again is harmless): the spawner exits when it reads the end."""
        self.socket.close()

    def kill(self) -> None:
        """SIGKILL the spawner (stalled, stopped by its user, idle, or the launcher is ending) and close the socket."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.close()


# --- the spawner process ------------------------------------------------------------------------------


def _spawner_main(sock: socket.socket, identity: Identity) -> None:
    """Drop to `identity`, serve start requests until the launcher closes the socket, exit."""
    code = 1
    try:
        _detach(sock)
        _become(identity)
        wakeup_read, wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        sock.send(json.dumps(READY).encode())
        _serve(sock, wakeup_read)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the launcher's loop
        with contextlib.suppress(Exception):
            print(f"nodeagent spawner of uid {identity[0]}: {exc!r}", file=sys.stderr)
    finally:
        os._exit(code)


def _detach(sock: socket.socket) -> None:
    """Keep only stderr and the socket: stdin and stdout (the agent's pipes) on /dev/null, every other fd closed."""
    signal.set_wakeup_fd(-1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    keep = sock.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _become(identity: Identity) -> None:
    """Switch to the identity for good and forbid tracing by its other processes."""
    uid, gid, groups = identity
    os.setgroups(list(groups))
    os.setgid(gid)
    os.setuid(uid)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _serve(sock: socket.socket, wakeup: int) -> None:
    """Start what is asked, report what exits; return when the launcher is gone."""
    while True:
        readable, _, _ = select.select([sock.fileno(), wakeup], [], [])
        if wakeup in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wakeup, 4096)
        if sock.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MESSAGE_LIMIT, 2, socket.MSG_CMSG_CLOEXEC)
            except OSError:
                return
            if not data:
                return
            try:
                answer = spawn(json.loads(data), fds)
            finally:
                for fd in fds:
                    os.close(fd)
            sock.send(json.dumps(answer).encode())
        for message in reaped():
            sock.send(json.dumps(message).encode())


def spawn(request: Message, fds: list[int]) -> Message:
    """Start one command as subprocess would with the launcher's options: its pid, or why it did not start."""
    argv, cwd, env = request["argv"], request["cwd"], request["env"]
    try:
        os.chdir(cwd)
    except PermissionError:
        return {"fallback": "working directory"}
    except OSError as exc:
        return failure(exc.errno or errno.EIO, cwd)
    out, err = fds
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]  # fmt: skip
    saved = last = 0
    for path in executables(argv[0], env):
        try:
            pid = os.posix_spawn(path, argv, env, file_actions=actions, setsid=True, setsigdef=RESET_SIGNALS)
        except OSError as exc:
            # As subprocess does: a missing candidate moves on, the first other failure is the one reported.
            last = exc.errno or errno.ENOEXEC
            if last not in (errno.ENOENT, errno.ENOTDIR) and not saved:
                saved = last
            continue
        return {"pid": pid}
    return failure(saved or last, argv[0])


def executables(program: str, env: dict[str, str]) -> Iterator[str]:
    """The paths `program` is tried at: itself when it names a directory, else each entry of the env's PATH."""
    if os.path.dirname(program):
        yield program
        return
    for directory in os.get_exec_path(env):
        yield os.path.join(directory, program)


def failure(number: int, filename: str) -> Message:
    """The answer for a start that failed with errno `number` on `filename`."""
    return {"errno": number, "strerror": os.strerror(number), "filename": filename}


def reaped() -> Iterator[Message]:
    """The exit report of every command that ended."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield exit_message(pid, status, usage)


def exit_message(pid: int, status: int, usage: resource.struct_rusage) -> Message:
    """The report of a reaped command: wait status and CPU times."""
    return {"exited": pid, "status": status, "user": usage.ru_utime, "kernel": usage.ru_stime}
