"""Commands of other users started by their identity's spawner, with real processes and the real user nobody."""

from __future__ import annotations

import os
import pwd
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nodeagent.errors import ProcessLost, ProcessStartError
from nodeagent.identity import RunAs
from nodeagent.launcher import Launcher
from nodeagent.process import ProcessResult, ProcessSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

NOBODY = pwd.getpwnam("nobody")
AS_NOBODY = RunAs(NOBODY.pw_uid, NOBODY.pw_gid, (100,), "/", "nobody")


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    started = Launcher()
    yield started
    started.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A working directory nobody may enter and write (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory(prefix="batchyard-spawner-") as scratch:
        path = Path(scratch)
        path.chmod(0o777)
        yield path


def spec(workdir: Path, script: str, **fields: object) -> ProcessSpec:
    values: dict[str, object] = {
        "argv": ("/bin/sh", "-c", script),
        "cwd": workdir,
        "env": {"PATH": "/usr/bin:/bin"},
        "stdout_path": workdir / "stdout.txt",
        "stderr_path": workdir / "stderr.txt",
        "run_as": AS_NOBODY,
        "kill_grace": 0.5,
    }
    values.update(fields)
    return ProcessSpec(**values)  # type: ignore[arg-type]


def spawners_of(launcher: Launcher) -> list[psutil.Process]:
    """The launcher's children running as nobody: its spawners for that user."""
    assert launcher.pid is not None
    return [child for child in psutil.Process(launcher.pid).children() if child.uids().real == NOBODY.pw_uid]


def output(workdir: Path) -> list[str]:
    return (workdir / "stdout.txt").read_text().split()


def test_commands_of_one_user_share_a_spawner_that_runs_as_exactly_that_identity(
    launcher: Launcher, workdir: Path
) -> None:
    # When two commands of nobody run one after the other
    script = 'echo "$PPID $(id -u) $(id -g) $(id -G)"; pwd; exit 3'
    first = launcher.run(spec(workdir, script))
    first_out = output(workdir)
    second = launcher.run(spec(workdir, script))
    # Then each ran as nobody with its groups, in its working directory, with its exit code ...
    assert first.exit_code == second.exit_code == 3
    assert first_out[1:] == [str(NOBODY.pw_uid), str(NOBODY.pw_gid), str(NOBODY.pw_gid), "100", str(workdir)]
    # ... both started by the one spawner of that identity, which runs as nobody and which nobody cannot trace
    (spawner,) = spawners_of(launcher)
    assert int(first_out[0]) == int(output(workdir)[0]) == spawner.pid
    assert spawner.uids() == (NOBODY.pw_uid,) * 3
    assert spawner.gids() == (NOBODY.pw_gid,) * 3
    assert os.stat(f"/proc/{spawner.pid}/mem").st_uid == 0


def test_a_missing_program_and_an_unexecutable_file_keep_their_codes(launcher: Launcher, workdir: Path) -> None:
    script = workdir / "script.sh"
    script.write_text("echo hi\n")
    with pytest.raises(ProcessStartError) as missing:
        launcher.run(spec(workdir, "", argv=("no-such-program-here",)))
    with pytest.raises(ProcessStartError) as unexecutable:
        launcher.run(spec(workdir, "", argv=(str(script),)))
    assert missing.value.code == "CommandProgramNotFound"
    assert unexecutable.value.code == "CommandLaunchFailed"
    assert "Permission denied" in str(unexecutable.value)


def test_the_program_is_looked_up_on_the_commands_own_path(launcher: Launcher, workdir: Path) -> None:
    bin_dir = workdir / "bin"
    bin_dir.mkdir(mode=0o755)
    (bin_dir / "greet").write_text("#!/bin/sh\necho hello from $0\n")
    (bin_dir / "greet").chmod(0o755)
    result = launcher.run(spec(workdir, "", argv=("greet",), env={"PATH": f"/nowhere:{bin_dir}:/bin"}))
    assert result.exit_code == 0
    assert output(workdir) == ["hello", "from", str(bin_dir / "greet")]


def test_a_working_directory_only_root_may_enter_still_works(launcher: Launcher, tmp_path: Path) -> None:
    # Given a working directory nobody cannot enter (the launcher's own fork enters it as root)
    tmp_path.chmod(0o700)
    result = launcher.run(spec(tmp_path, "pwd; id -u"))
    assert result.exit_code == 0
    assert output(tmp_path) == [str(tmp_path), str(NOBODY.pw_uid)]


def test_a_missing_working_directory_is_a_launch_failure(launcher: Launcher, workdir: Path) -> None:
    with pytest.raises(ProcessStartError) as caught:
        launcher.run(spec(workdir, "true", cwd=workdir / "gone"))
    assert caught.value.code == "CommandLaunchFailed"


def test_a_command_that_kills_its_spawner_still_reports_its_exit_and_the_next_gets_a_new_spawner(
    launcher: Launcher, workdir: Path
) -> None:
    # When a command of nobody SIGKILLs the spawner that started it, once the spawner answered its start
    # (one killed before answering fails that start instead), then exits 7
    result = launcher.run(spec(workdir, "sleep 0.3; kill -KILL $PPID; sleep 0.3; exit 7"))
    # Then its exit still arrives (the launcher reaped it), and nobody's next command has a new spawner
    assert result.exit_code == 7
    killed = spawners_of(launcher)
    after = launcher.run(spec(workdir, "echo $PPID"))
    assert after.exit_code == 0
    (spawner,) = spawners_of(launcher)
    assert spawner.pid == int(output(workdir)[0])
    assert spawner.pid not in [process.pid for process in killed]


def test_a_command_that_stops_its_spawner_still_ends_and_the_next_gets_a_new_spawner(
    launcher: Launcher, workdir: Path
) -> None:
    # When a command of nobody stops the spawner that started it (which would report its exit), once
    # the spawner answered its start (one stopped before answering fails that start instead)
    result = launcher.run(spec(workdir, "echo $PPID; sleep 0.3; kill -STOP $PPID; exit 6"))
    # Then the stopped spawner is killed, the command's exit still arrives, and nobody's next command
    # has a new spawner
    assert result.exit_code == 6
    stopped = int(output(workdir)[0])
    assert launcher.run(spec(workdir, "echo $PPID; exit 5")).exit_code == 5
    assert int(output(workdir)[0]) != stopped
    assert not psutil.pid_exists(stopped)


def test_closing_the_launcher_kills_spawned_commands_and_their_spawner(launcher: Launcher, workdir: Path) -> None:
    # Given a command of nobody with a child of its own, running
    finished: list[ProcessResult | BaseException] = []

    def run() -> None:
        try:
            finished.append(launcher.run(spec(workdir, "echo $$; sleep 60 & sleep 60")))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            finished.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not output_ready(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = psutil.Process(int(output(workdir)[0]))
    tree = [leader, *leader.children()]
    spawners = spawners_of(launcher)
    # When the launcher is closed (the agent stopped)
    launcher.close()
    thread.join(timeout=10)
    # Then the command's tree and the spawner are gone, and the run learns its command was lost
    assert [type(result) for result in finished] == [ProcessLost]
    for process in [*tree, *spawners]:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def output_ready(workdir: Path) -> bool:
    path = workdir / "stdout.txt"
    return path.exists() and path.read_text().strip().isdigit()


def test_exits_reported_while_another_start_waits_reach_their_runs(launcher: Launcher, workdir: Path) -> None:
    # Many short commands of nobody at once: exits arrive while other starts wait for their answer
    results: list[int | None] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        directory = workdir / f"w{index}"
        directory.mkdir(mode=0o777)
        directory.chmod(0o777)
        result = launcher.run(spec(directory, f"exit {index}"))
        with lock:
            results.append(result.exit_code)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(code or 0 for code in results) == list(range(40))
    assert len(spawners_of(launcher)) == 1
