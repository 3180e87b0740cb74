from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nodeagent import process
from nodeagent.errors import ProcessStartError
from nodeagent.identity import RunAs
from nodeagent.launcher import Launcher
from nodeagent.process import ProcessSpec


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    """One launcher process for the module's tests."""
    started = Launcher()
    yield started
    started.close()


@pytest.fixture(params=["popen", "launcher"])
def run(request: pytest.FixtureRequest) -> process.RunFunction:
    """`process.run` as it starts commands itself, and as the agent's launcher starts them."""
    if request.param == "popen":
        return process.run
    launcher: Launcher = request.getfixturevalue("launcher")
    return launcher.run


def spec_for(tmp_path: Path, *argv: str, **fields: object) -> ProcessSpec:
    values: dict[str, object] = {
        "argv": argv,
        "cwd": tmp_path,
        "env": {"PATH": "/usr/bin:/bin"},
        "stdout_path": tmp_path / "stdout.txt",
        "stderr_path": tmp_path / "stderr.txt",
        "kill_grace": 1.0,
    }
    values.update(fields)
    return ProcessSpec(**values)  # type: ignore[arg-type]


def alive(pids: list[int], wait: float = 2.0) -> list[int]:
    """Pids that still exist and are not zombies once signals had `wait` seconds to be delivered."""
    deadline = time.monotonic() + wait
    living = _living(pids)
    while living and time.monotonic() < deadline:
        time.sleep(0.05)
        living = _living(pids)
    return living


def _living(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            pass
    return living


def test_exit_code_and_output_files(tmp_path: Path, run: process.RunFunction) -> None:
    # Given a command that writes to both streams and exits 3
    spec = spec_for(tmp_path, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
    # When it runs
    result = run(spec)
    # Then the exit code and both files are recorded
    assert (result.exit_code, result.signal, result.timed_out) == (3, None, False)
    assert (tmp_path / "stdout.txt").read_text() == "out\n"
    assert (tmp_path / "stderr.txt").read_text() == "err\n"
    assert result.ended_at >= result.started_at


def test_output_files_are_truncated_per_run(tmp_path: Path, run: process.RunFunction) -> None:
    (tmp_path / "stdout.txt").write_text("old output\n")
    run(spec_for(tmp_path, "/bin/echo", "new"))
    assert (tmp_path / "stdout.txt").read_text() == "new\n"


def test_environment_and_cwd_are_exactly_as_given(tmp_path: Path, run: process.RunFunction) -> None:
    # Given an env with one variable and no inheritance from the test process
    spec = spec_for(tmp_path, "/bin/sh", "-c", "pwd; env | sort", env={"ONLY": "this", "PATH": "/bin"})
    run(spec)
    lines = (tmp_path / "stdout.txt").read_text().splitlines()
    assert lines[0] == str(tmp_path)
    assert "ONLY=this" in lines
    assert not any(line.startswith("HOME=") for line in lines)


def test_no_shell_expansion(tmp_path: Path, run: process.RunFunction) -> None:
    run(spec_for(tmp_path, "/bin/echo", "$HOME", "*"))
    assert (tmp_path / "stdout.txt").read_text() == "$HOME *\n"


def test_runs_in_a_new_session(tmp_path: Path, run: process.RunFunction) -> None:
    result = run(spec_for(tmp_path, "/bin/sh", "-c", "ps -o sid= -p $$; ps -o pid= -p $$"))
    assert result.exit_code == 0
    sid, pid = (tmp_path / "stdout.txt").read_text().split()
    assert sid == pid
    assert int(sid) != os.getsid(0)


def test_timeout_kills_the_whole_tree(tmp_path: Path, run: process.RunFunction) -> None:
    # Given a shell that forks two grandchildren
    pids: list[int] = []
    spec = spec_for(tmp_path, "/bin/sh", "-c", "sleep 100 & sleep 100 & wait", timeout=0.5, on_start=pids.append)
    # When the wall-clock limit passes
    result = run(spec)
    # Then the result says so and nothing of the tree is left
    assert result.timed_out
    assert result.exit_code is None and result.signal == signal.SIGTERM
    leftovers = [p.pid for p in psutil.process_iter() if _in_group(p, pids[0])]
    assert alive(leftovers) == []


def test_timeout_kills_a_descendant_that_left_the_group(tmp_path: Path, run: process.RunFunction) -> None:
    # Given a command whose grandchild moves to its own session
    marker = tmp_path / "grandchild.pid"
    script = f"setsid sh -c 'echo $$ > {marker}; exec sleep 100' & sleep 100"
    spec = spec_for(tmp_path, "/bin/sh", "-c", script, timeout=1.0)
    # When it times out
    run(spec)
    # Then the escaped grandchild is gone too
    grandchild = int(marker.read_text())
    assert alive([grandchild]) == []


def test_sigterm_ignoring_child_is_killed_after_grace(tmp_path: Path, run: process.RunFunction) -> None:
    # Given a command that ignores SIGTERM
    spec = spec_for(
        tmp_path,
        "/bin/sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        timeout=0.3,
        kill_grace=0.5,
    )
    started = time.monotonic()
    # When it times out
    result = run(spec)
    # Then SIGKILL ends it after the grace period
    assert result.timed_out and result.signal == signal.SIGKILL
    assert time.monotonic() - started >= 0.8


def test_cancel_stops_the_process(tmp_path: Path, run: process.RunFunction) -> None:
    cancel = threading.Event()
    spec = spec_for(tmp_path, "/bin/sleep", "100", cancel=cancel)
    threading.Timer(0.2, cancel.set).start()
    result = run(spec)
    assert result.cancelled and not result.timed_out
    assert result.signal == signal.SIGTERM


def test_leftover_group_members_are_stopped_after_a_normal_exit(tmp_path: Path, run: process.RunFunction) -> None:
    marker = tmp_path / "bg.pid"
    result = run(spec_for(tmp_path, "/bin/sh", "-c", f"sleep 100 & echo $! > {marker}"))
    assert result.exit_code == 0
    assert alive([int(marker.read_text())]) == []


def test_missing_program_is_command_program_not_found(tmp_path: Path, run: process.RunFunction) -> None:
    with pytest.raises(ProcessStartError) as caught:
        run(spec_for(tmp_path, "no-such-program-xyz"))
    assert caught.value.code == "CommandProgramNotFound"
    assert caught.value.outcome == "preprocessing_error"


def test_directory_as_program_is_command_launch_failed(tmp_path: Path, run: process.RunFunction) -> None:
    with pytest.raises(ProcessStartError) as caught:
        run(spec_for(tmp_path, str(tmp_path)))
    assert caught.value.code == "CommandLaunchFailed"


def test_unexecutable_format_is_command_launch_failed(tmp_path: Path, run: process.RunFunction) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(0o755)
    with pytest.raises(ProcessStartError) as caught:
        run(spec_for(tmp_path, str(garbage)))
    assert caught.value.code == "CommandLaunchFailed"


def test_program_is_found_on_the_given_path(tmp_path: Path, run: process.RunFunction) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mytool"
    tool.write_text("#!/bin/sh\necho from tool\n")
    tool.chmod(0o755)
    result = run(spec_for(tmp_path, "mytool", env={"PATH": f"/bin:{bindir}"}))
    assert result.exit_code == 0
    assert (tmp_path / "stdout.txt").read_text() == "from tool\n"


def test_cpu_times_are_reported(tmp_path: Path, run: process.RunFunction) -> None:
    result = run(spec_for(tmp_path, "/bin/sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"))
    assert result.user_cpu_seconds + result.kernel_cpu_seconds > 0


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid
    except (ProcessLookupError, PermissionError):
        return False


def test_run_tool_captures_output_and_exit_code() -> None:
    result = process.run_tool(["/bin/sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (result.exit_code, result.ok) == (4, False)
    assert result.output.splitlines() == ["out", "err"]


def test_run_tool_feeds_input_on_stdin() -> None:
    result = process.run_tool(["cat"], input=b"secret line\n")
    assert result.ok and result.output == "secret line"


def test_run_tool_finds_sbin_programs_with_its_own_path() -> None:
    assert process.run_tool(["useradd", "--help"]).output.startswith("Usage: useradd")


def test_run_tool_kills_a_program_past_its_timeout() -> None:
    started = time.monotonic()
    result = process.run_tool(["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=0.3)
    assert result.exit_code == process.TOOL_TIMED_OUT
    assert time.monotonic() - started < 10


def test_run_tool_reports_a_missing_program() -> None:
    assert process.run_tool(["/nonexistent/tool"]).exit_code == process.TOOL_NOT_FOUND


def test_kill_user_processes_refuses_root_and_the_agent() -> None:
    with pytest.raises(ValueError):
        process.kill_user_processes(0)
    with pytest.raises(ValueError):
        process.kill_user_processes(os.getuid())


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_command_runs_as_exactly_the_given_identity(tmp_path: Path, run: process.RunFunction) -> None:
    nobody = RunAs(uid=65534, gid=65534, groups=(100,), home="/", username="nobody")
    script = 'echo "$(id -u) $(id -g) $(id -G)"'
    result = run(spec_for(tmp_path, "sh", "-c", script, run_as=nobody))
    assert result.exit_code == 0
    assert (tmp_path / "stdout.txt").read_text().split() == ["65534", "65534", "65534", "100"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_missing_program_of_another_user_is_command_program_not_found(
    tmp_path: Path, run: process.RunFunction
) -> None:
    nobody = RunAs(uid=65534, gid=65534, groups=(), home="/", username="nobody")
    with pytest.raises(ProcessStartError) as caught:
        run(spec_for(tmp_path, "no-such-program-here", run_as=nobody))
    assert caught.value.code == "CommandProgramNotFound"
