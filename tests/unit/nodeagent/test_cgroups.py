"""Per-attempt cgroups with real processes (on a host where root may create cgroups; skipped elsewhere)."""

from __future__ import annotations

import os
import pwd
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from nodeagent import cgroups
from nodeagent.cgroups import CgroupSupport, ResourceUsage, parse_blkio, parse_io_stat
from nodeagent.errors import CommandFailed, ProcessStartError, WallClockExceeded
from nodeagent.identity import RunAs
from nodeagent.launcher import Launcher
from nodeagent.process import ProcessSpec
from nodeagent.steps import PrepareDirs, RunCommandLine
from nodeagent.steps.base import RunDeps, TaskContext
from nodeagent.steps.report import build_stats
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context

PY = sys.executable
LAUNCHER = Launcher()
"""The agent's launcher, which starts commands inside their cgroups (stopped after the module)."""
ALLOCATE_60_MB = f"{PY} -c \"import time; b = b'x' * (60 << 20); time.sleep(0.5)\""


@pytest.fixture(scope="module", autouse=True)
def _stop_launcher() -> Iterator[None]:
    """Stop the module's launcher once its tests ran."""
    yield
    LAUNCHER.close()


@pytest.fixture
def support() -> Iterator[CgroupSupport]:
    """cgroup support for a node of its own, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    found = cgroups.detect("auto", f"test-{uuid.uuid4().hex[:10]}")
    if not found.enabled:
        pytest.skip("no writable cgroup v1 or v2 hierarchy on this host")
    yield found
    cgroups.remove_node(found)
    assert not any(directory.exists() for directory in found.node_dirs)


def context(root: Path, command_line: str, support: CgroupSupport, **fields: object) -> TaskContext:
    deps = RunDeps(
        blob=FakeBlobStore(),
        reporter=FakeReporter(),
        agent_path="/usr/bin:/bin",
        kill_grace=0.5,
        cgroups=support,
        run_process=LAUNCHER.run,
    )
    ctx = make_context(root, make_attempt_spec(command_line=command_line, **fields), deps)
    PrepareDirs().run(ctx)
    return ctx


def attempt_dirs(support: CgroupSupport, attempt_id: str = "attempt-1") -> list[Path]:
    return [base / attempt_id for base in support.node_dirs]


def test_peak_memory_of_a_task_allocating_60_mb(tmp_path: Path, support: CgroupSupport) -> None:
    # Given a task that allocates and touches 60 MB
    ctx = context(tmp_path, ALLOCATE_60_MB, support)
    # When it runs in its cgroup
    RunCommandLine().run(ctx)
    # Then the cgroup's peak memory covers the allocation
    assert ctx.usage is not None and ctx.usage.peak_memory_bytes is not None
    assert ctx.usage.peak_memory_bytes >= 50 * 1024 * 1024


def test_cpu_burning_task_reports_user_cpu(tmp_path: Path, support: CgroupSupport) -> None:
    # Given a task that only computes
    ctx = context(tmp_path, f'{PY} -c "sum(i * i for i in range(3_000_000))"', support)
    # When it runs
    RunCommandLine().run(ctx)
    stats = build_stats(ctx.process, ctx.usage)
    # Then its cgroup accounted user CPU time, within its wall clock
    assert stats is not None and stats.user_cpu_seconds > 0
    assert stats.wall_clock_seconds > 0


def test_the_process_runs_inside_the_attempt_cgroup(tmp_path: Path, support: CgroupSupport) -> None:
    ctx = context(tmp_path, "/bin/cat /proc/self/cgroup", support)
    RunCommandLine().run(ctx)
    lines = ctx.dirs.stdout.read_text()
    assert f"/batchyard/{support.node_dirs[0].name}/attempt-1" in lines


def test_wall_clock_kill_leaves_no_process_and_removes_the_cgroup(tmp_path: Path, support: CgroupSupport) -> None:
    # Given a task whose grandchildren escape its process group and its process tree
    line = "/bin/sh -c '(setsid /bin/sleep 1000 & echo $! > escaped.pid); /bin/sleep 1000 & /bin/sleep 1000'"
    ctx = context(tmp_path, line, support, max_wall_clock_seconds=0.5)
    # When its wall clock expires
    with pytest.raises(WallClockExceeded):
        RunCommandLine().run(ctx)
    # Then the escaped grandchild is dead too, and the cgroup is gone
    escaped = int((ctx.dirs.wd / "escaped.pid").read_text())
    assert not _alive(escaped)
    assert not any(path.exists() for path in attempt_dirs(support))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_normal_exit_kills_daemons_left_in_the_cgroup(tmp_path: Path, support: CgroupSupport) -> None:
    line = "/bin/sh -c '(setsid /bin/sleep 1000 & echo $! > daemon.pid)'"
    ctx = context(tmp_path, line, support)
    RunCommandLine().run(ctx)
    assert not _alive(int((ctx.dirs.wd / "daemon.pid").read_text()))
    assert not any(path.exists() for path in attempt_dirs(support))


def test_arguments_reach_the_program_unchanged(tmp_path: Path, support: CgroupSupport) -> None:
    # Given arguments a shell would interpret
    line = "/usr/bin/printf '%s|' '$(touch pwned)' 'a;b' '\"q\"' '*' ''"
    ctx = context(tmp_path, line, support)
    # When they pass through the cgroup wrapper
    RunCommandLine().run(ctx)
    # Then the program gets them verbatim and nothing ran them
    assert ctx.dirs.stdout.read_text() == '$(touch pwned)|a;b|"q"|*||'
    assert not (ctx.dirs.wd / "pwned").exists()


def test_program_lookup_failures_keep_their_codes(tmp_path: Path, support: CgroupSupport) -> None:
    ctx = context(tmp_path, "no-such-program-here", support)
    with pytest.raises(ProcessStartError) as caught:
        RunCommandLine().run(ctx)
    assert caught.value.code == "CommandProgramNotFound" and not ctx.process_started


def test_non_zero_exit_is_still_a_failure_exit_code(tmp_path: Path, support: CgroupSupport) -> None:
    ctx = context(tmp_path, "/bin/sh -c 'exit 3'", support)
    with pytest.raises(CommandFailed):
        RunCommandLine().run(ctx)
    assert ctx.exit_code == 3


def test_fallback_without_cgroups_samples_memory_and_uses_rusage(tmp_path: Path) -> None:
    # Given cgroups turned off by the setting
    off = cgroups.detect("off", "node-1")
    ctx = context(tmp_path, ALLOCATE_60_MB, off)
    # When a task allocating 60 MB runs
    RunCommandLine().run(ctx)
    stats = build_stats(ctx.process, ctx.usage)
    # Then memory comes from sampling the tree and CPU from rusage
    assert not off.enabled
    assert stats is not None and stats.peak_memory_bytes >= 50 * 1024 * 1024
    assert stats.user_cpu_seconds + stats.kernel_cpu_seconds > 0


def test_sweep_removes_cgroups_left_by_an_earlier_agent(support: CgroupSupport) -> None:
    stale = cgroups.create(support, "stale-attempt")
    assert stale is not None and all(path.is_dir() for path in stale.dirs)
    assert cgroups.sweep(support) == ["stale-attempt"]
    assert not any(path.exists() for path in stale.dirs)


def test_a_cgroup_an_earlier_run_of_the_attempt_left_is_emptied_and_made_anew(support: CgroupSupport) -> None:
    # Given the cgroup of an attempt whose earlier run left a process in it
    stale = cgroups.create(support, "rerun-attempt")
    assert stale is not None
    straggler = psutil.Popen(["sleep", "60"])
    stale.enter(straggler.pid)
    # When the attempt runs again
    fresh = cgroups.create(support, "rerun-attempt")
    # Then its cgroup exists, empty, and the straggler is gone
    assert fresh is not None and all(path.is_dir() for path in fresh.dirs)
    assert straggler.wait(timeout=5) == -9
    assert fresh.pids() == set()
    cgroups.release(fresh)
    assert not any(path.exists() for path in fresh.dirs)


def test_create_without_support_is_none() -> None:
    assert cgroups.create(cgroups.NO_CGROUPS, "a") is None


def test_forced_version_that_is_missing_falls_back_to_none(tmp_path: Path) -> None:
    assert not cgroups.detect("v2", "n", root=tmp_path).enabled
    assert not cgroups.detect("v1", "n", root=tmp_path).enabled


def test_own_cgroups_reads_each_hierarchy_and_the_unified_one(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("9:name=systemd:/\n4:memory:/svc/a\n2:cpu,cpuacct:/svc\n0::/unified/x\n")
    assert cgroups.own_cgroups(proc) == {
        "name=systemd": "/", "memory": "/svc/a", "cpu": "/svc", "cpuacct": "/svc", "": "/unified/x",
    }  # fmt: skip


def test_parse_io_stat_sums_devices() -> None:
    text = "8:0 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=2 rios=1 wios=1\n"
    assert parse_io_stat(text) == {"rbytes": 101, "wbytes": 202, "rios": 4, "wios": 5}


def test_parse_blkio_sums_read_and_write() -> None:
    text = "8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:16 Read 1\nTotal 61\n"
    assert parse_blkio(text) == {"Read": 11, "Write": 20}


def test_merged_usage_prefers_measured_values() -> None:
    measured = ResourceUsage(user_cpu_seconds=1.0, peak_memory_bytes=None)
    assert measured.merged(ResourceUsage(user_cpu_seconds=9.0, peak_memory_bytes=5)) == ResourceUsage(
        user_cpu_seconds=1.0, peak_memory_bytes=5
    )


def test_a_task_user_starts_inside_every_hierarchy_and_the_launcher_goes_home(
    tmp_path: Path, support: CgroupSupport
) -> None:
    # Given an attempt's cgroup and a command running as an unprivileged user
    nobody = pwd.getpwnam("nobody")
    group = cgroups.create(support, "attempt-u")
    assert group is not None
    spec = ProcessSpec(
        argv=("/bin/cat", "/proc/self/cgroup"),
        cwd=Path("/"),
        env={"PATH": "/usr/bin:/bin"},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        run_as=RunAs(nobody.pw_uid, nobody.pw_gid, (), "/", "nobody"),
        cgroup=group,
    )
    # When the launcher starts it (no wrapper: the command's first read is of its own cgroups)
    try:
        result = LAUNCHER.run(spec)
    finally:
        cgroups.release(group)
    # Then it was born in every hierarchy of the attempt, and the launcher and the user's spawner that
    # started it are back in the agent's cgroups
    assert result.exit_code == 0, (tmp_path / "err").read_text()
    assert (tmp_path / "out").read_text().count("/attempt-u") == len(support.node_dirs)
    spawners = [child.pid for child in psutil.Process(LAUNCHER.pid).children() if child.uids().real == nobody.pw_uid]
    assert len(spawners) == 1
    for pid in [LAUNCHER.pid, *spawners]:
        assert cgroups.own_cgroups(Path(f"/proc/{pid}/cgroup")) == cgroups.own_cgroups()


def test_a_missing_program_leaves_no_cgroup(tmp_path: Path, support: CgroupSupport) -> None:
    ctx = context(tmp_path, "./not-here.sh", support)
    with pytest.raises(ProcessStartError):
        RunCommandLine().run(ctx)
    assert not any(path.exists() for path in attempt_dirs(support))
