"""Waiting for a child fails fast, with its log, when it exits first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchyard import procs
from batchyard.ports import free_port
from batchyard.readiness import StartupFailed, http_answers, redis_answers, wait_until


def test_child_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    # Given a child that prints an error and exits with 3
    child = procs.start("broken", ["sh", "-c", "echo cannot bind; exit 3"], dict(os.environ), tmp_path / "b.log")
    # When we wait for it to answer / Then the error names it, its exit code and its log
    with pytest.raises(StartupFailed, match=r"(?s)broken exited with code 3 before answering.*cannot bind"):
        wait_until(child, lambda: False, 10.0, "answering")


def test_child_that_never_answers_times_out(tmp_path: Path) -> None:
    # Given a child that runs but never answers
    child = procs.start("mute", ["sleep", "30"], dict(os.environ), tmp_path / "m.log")
    try:
        # When we wait briefly / Then the error says it was not answering
        with pytest.raises(StartupFailed, match="mute was not answering after"):
            wait_until(child, lambda: False, 0.3, "answering")
    finally:
        procs.stop_all([child], 5.0)


def test_probes_are_false_when_nothing_listens() -> None:
    # Given a port nobody listens on / Then neither probe succeeds
    port = free_port()
    assert not redis_answers(f"redis://127.0.0.1:{port}/0")()
    assert not http_answers(f"http://127.0.0.1:{port}/")()
