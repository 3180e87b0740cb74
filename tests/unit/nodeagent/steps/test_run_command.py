from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nodeagent.errors import AttemptAbandoned, CommandFailed, ProcessStartError, WallClockExceeded
from nodeagent.steps import PrepareDirs, RunCommandLine
from nodeagent.steps.base import Step, TaskContext
from nodeagent.steps.run_command import split_command_line
from nodeagent.testing import make_attempt_spec, make_context

_: Step = RunCommandLine()


def context(tmp_path: Path, command_line: str, **fields: object) -> TaskContext:
    ctx = make_context(tmp_path, make_attempt_spec(command_line=command_line, **fields))
    PrepareDirs().run(ctx)
    return ctx


def test_runs_in_the_working_directory_with_the_batch_environment(tmp_path: Path) -> None:
    ctx = context(tmp_path, "/bin/sh -c 'pwd; echo $AZ_BATCH_TASK_ID $HOME'")
    RunCommandLine().run(ctx)
    assert ctx.process_started and ctx.exit_code == 0
    assert ctx.dirs.stdout.read_text() == f"{ctx.dirs.wd}\ntask-1 {ctx.dirs.wd}\n"


def test_programs_in_the_working_directory_are_found_on_path(tmp_path: Path) -> None:
    ctx = context(tmp_path, "myscript.sh arg")
    script = ctx.dirs.wd / "myscript.sh"
    script.write_text("#!/bin/sh\necho got $1\n")
    script.chmod(0o755)
    RunCommandLine().run(ctx)
    assert ctx.dirs.stdout.read_text() == "got arg\n"


def test_non_zero_exit_is_failure_exit_code(tmp_path: Path) -> None:
    ctx = context(tmp_path, "/bin/sh -c 'exit 7'")
    with pytest.raises(CommandFailed) as caught:
        RunCommandLine().run(ctx)
    assert (caught.value.code, caught.value.outcome, ctx.exit_code) == ("FailureExitCode", "exited", 7)


def test_wall_clock_expiry_is_timed_out(tmp_path: Path) -> None:
    ctx = context(tmp_path, "/bin/sleep 30", max_wall_clock_seconds=0.2)
    with pytest.raises(WallClockExceeded) as caught:
        RunCommandLine().run(ctx)
    assert (caught.value.code, caught.value.outcome) == ("MaxWallClockTimeExceeded", "timed_out")
    assert ctx.exit_code == 128 + 15


def test_cancellation_abandons_the_attempt(tmp_path: Path) -> None:
    ctx = context(tmp_path, "/bin/sleep 30")
    threading.Timer(0.2, ctx.cancel.set).start()
    with pytest.raises(AttemptAbandoned):
        RunCommandLine().run(ctx)


def test_missing_program_is_a_preprocessing_error_and_never_started(tmp_path: Path) -> None:
    ctx = context(tmp_path, "nope-not-here")
    with pytest.raises(ProcessStartError) as caught:
        RunCommandLine().run(ctx)
    assert caught.value.code == "CommandProgramNotFound"
    assert not ctx.process_started


@pytest.mark.parametrize("line", ["", "   ", "echo 'unbalanced", "a\0b"])
def test_unusable_command_lines_fail_to_launch(line: str) -> None:
    with pytest.raises(ProcessStartError) as caught:
        split_command_line(line)
    assert caught.value.code == "CommandLaunchFailed"


def test_split_follows_posix_quoting() -> None:
    assert split_command_line("""/bin/sh -c "echo 'a b' $X" z""") == ("/bin/sh", "-c", "echo 'a b' $X", "z")
