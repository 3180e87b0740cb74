"""Children run in their own session, die with their parent, and are stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from batchyard import procs

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)"]  # fmt: skip


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` no longer runs (or is a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_child_gets_its_own_session_and_log(tmp_path: Path) -> None:
    # Given a child that prints something
    child = procs.start("echo", ["sh", "-c", "echo hello"], dict(os.environ), tmp_path / "logs" / "echo.log")
    child.process.wait(timeout=10)
    # Then its output is in its log
    assert child.tail() == "hello"


def test_child_is_a_session_leader(tmp_path: Path) -> None:
    # Given a running child / Then it leads its own session and process group
    child = procs.start("sleeper", SLEEPER, dict(os.environ), tmp_path / "sleeper.log")
    try:
        assert os.getsid(child.pid) == child.pid
    finally:
        procs.stop_all([child], 5.0)


def test_stop_all_terminates_children(tmp_path: Path) -> None:
    # Given two running children / When they are stopped / Then both have exited
    children = [procs.start(f"s{i}", SLEEPER, dict(os.environ), tmp_path / f"s{i}.log") for i in range(2)]
    procs.stop_all(children, 5.0)
    assert [child.process.returncode for child in children] == [-signal.SIGTERM, -signal.SIGTERM]


def test_stop_all_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    # Given a child that ignores SIGTERM
    log = tmp_path / "stubborn.log"
    child = procs.start("stubborn", STUBBORN, dict(os.environ), log)
    deadline = time.monotonic() + 10
    while "ready" not in child.tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    # When it is stopped with a short grace / Then it was killed
    procs.stop_all([child], 0.5)
    assert child.process.returncode == -signal.SIGKILL


def test_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    # Given a parent process that starts a child through procs and prints the child's pid
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from batchyard import procs\n"
        f"child = procs.start('sleeper', {SLEEPER!r}, dict(os.environ), Path({str(tmp_path / 'c.log')!r}))\n"
        "print(child.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    # When the parent is killed with SIGKILL
    parent.kill()
    parent.wait(timeout=10)
    parent.stdout.close()
    # Then the child goes away too
    assert wait_gone(child_pid)


def test_log_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    # Given no log file / Then the tail is empty
    assert procs.log_tail(tmp_path / "none.log") == ""
