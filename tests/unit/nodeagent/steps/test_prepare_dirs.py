from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from nodeagent.errors import IdentityError
from nodeagent.identity import IdentityResolver, UserNames
from nodeagent.layout import NodeLayout
from nodeagent.messages import OutputFileSpec, UserIdentitySpec
from nodeagent.steps import PrepareDirs
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context
from nodeagent.users import Accounts

from ..identities import run_as_user

_: Step = PrepareDirs()

TASK = UserIdentitySpec(auto_user_scope="task")


def test_creates_the_working_directory_and_fresh_logs(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.dirs.task_dir.mkdir(parents=True)
    ctx.dirs.stdout.write_text("previous attempt")
    PrepareDirs().run(ctx)
    assert ctx.dirs.wd.is_dir()
    assert ctx.dirs.stdout.read_text() == ""
    assert ctx.dirs.stderr.exists()


def test_upload_logs_only_for_a_task_with_output_files(tmp_path: Path) -> None:
    output = OutputFileSpec(file_pattern="*.txt", container_url="http://blob/c", upload_condition="taskcompletion")
    with_outputs = make_context(tmp_path, make_attempt_spec(output_files=[output]))
    PrepareDirs().run(with_outputs)
    assert with_outputs.dirs.upload_out.read_text() == "" and with_outputs.dirs.upload_err.exists()
    # A later attempt of a task without output files leaves none behind
    without = make_context(tmp_path, make_attempt_spec())
    PrepareDirs().run(without)
    assert not without.dirs.upload_out.exists() and not without.dirs.upload_err.exists()


def test_is_idempotent(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    PrepareDirs().run(ctx)
    (ctx.dirs.wd / "keep.txt").write_text("k")
    PrepareDirs().run(ctx)
    assert (ctx.dirs.wd / "keep.txt").read_text() == "k"


def test_modes_are_the_tasks_whatever_the_umask_or_an_earlier_attempt_left(tmp_path: Path) -> None:
    # Given an agent whose umask takes away the owner's write bit
    ctx = make_context(tmp_path)
    previous = os.umask(0o277)
    try:
        PrepareDirs().run(ctx)
    finally:
        os.umask(previous)
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in (ctx.dirs.task_dir, ctx.dirs.wd, ctx.dirs.stdout)}
    assert modes == {ctx.dirs.task_dir: 0o700, ctx.dirs.wd: 0o700, ctx.dirs.stdout: 0o600}
    # And an attempt that opened its working directory to everyone
    ctx.dirs.wd.chmod(0o777)
    # When the next attempt's directories are prepared, it is private again
    PrepareDirs().run(ctx)
    assert stat.S_IMODE(ctx.dirs.wd.stat().st_mode) == 0o700


def root_context(node_root: Path, prefix: str, **fields: Any) -> TaskContext:
    """A context whose identities are real accounts prefixed `prefix`, under a root every user can reach."""
    deps = RunDeps(
        blob=FakeBlobStore(),
        reporter=FakeReporter(),
        agent_path="/usr/bin:/bin",
        identities=IdentityResolver(Accounts(), UserNames(prefix)),
    )
    NodeLayout(node_root).create()
    return make_context(node_root, make_attempt_spec(**fields), deps)


def test_the_task_directory_belongs_to_the_task_user(node_root: Path, user_prefix: str) -> None:
    # Given a task-scope identity
    ctx = root_context(node_root, user_prefix, user_identity=TASK)
    # When the directories are prepared
    PrepareDirs().run(ctx)
    # Then the task dir, wd and logs are the task user's and private to it
    assert ctx.run_as.username.startswith(user_prefix)
    for path, mode in ((ctx.dirs.task_dir, 0o700), (ctx.dirs.wd, 0o700), (ctx.dirs.stdout, 0o600)):
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (ctx.run_as.uid, ctx.run_as.gid, mode)
    assert ctx.dirs.task_dir.parent.stat().st_uid == os.getuid()
    assert stat.S_IMODE((node_root / "shared").stat().st_mode) == 0o1777


def test_files_the_task_creates_belong_to_it(node_root: Path, user_prefix: str) -> None:
    ctx = root_context(node_root, user_prefix, user_identity=TASK)
    PrepareDirs().run(ctx)
    code, output = run_as_user(ctx.run_as, ctx.dirs.wd, "/bin/sh", "-c", "echo x > made.txt; touch ../note.txt")
    assert code == 0, output
    for path in (ctx.dirs.wd / "made.txt", ctx.dirs.task_dir / "note.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (ctx.run_as.uid, ctx.run_as.gid)


def test_another_task_user_cannot_read_the_working_directory(node_root: Path, user_prefix: str) -> None:
    # Given two tasks with task-scope users, the first holding a file
    first = root_context(node_root, user_prefix, task_id="first", user_identity=TASK)
    PrepareDirs().run(first)
    assert run_as_user(first.run_as, first.dirs.wd, "/bin/sh", "-c", "echo secret > data.txt")[0] == 0
    second = root_context(node_root, user_prefix, task_id="second", user_identity=TASK)
    PrepareDirs().run(second)
    # When the second task's user tries to read or list it
    code, output = run_as_user(second.run_as, second.dirs.wd, "/bin/cat", str(first.dirs.wd / "data.txt"))
    listing, _ = run_as_user(second.run_as, second.dirs.wd, "/bin/ls", str(first.dirs.task_dir))
    # Then both are refused
    assert code != 0 and "Permission denied" in output
    assert listing != 0


def test_a_task_user_can_use_the_shared_directory(node_root: Path, user_prefix: str) -> None:
    ctx = root_context(node_root, user_prefix, user_identity=TASK)
    PrepareDirs().run(ctx)
    code, output = run_as_user(ctx.run_as, ctx.dirs.wd, "/bin/sh", "-c", f"echo s > {node_root}/shared/s.txt")
    assert code == 0, output


def test_a_linked_working_directory_is_replaced_not_followed(node_root: Path, user_prefix: str) -> None:
    # Given a wd that an earlier attempt replaced with a link to a directory of the agent's
    ctx = root_context(node_root, user_prefix, user_identity=TASK)
    PrepareDirs().run(ctx)
    outside = node_root / "outside"
    outside.mkdir()
    shutil.rmtree(ctx.dirs.wd)
    ctx.dirs.wd.symlink_to(outside)
    ctx.dirs.stdout.unlink()
    ctx.dirs.stdout.symlink_to(outside / "victim.txt")
    # When the directories are prepared again
    PrepareDirs().run(ctx)
    # Then the links are gone and the outside stays the agent's
    assert ctx.dirs.wd.is_dir() and not ctx.dirs.wd.is_symlink()
    assert not ctx.dirs.stdout.is_symlink()
    assert outside.stat().st_uid == os.getuid() and not (outside / "victim.txt").exists()


def test_a_directory_left_by_another_identity_is_handed_over(node_root: Path, user_prefix: str) -> None:
    # Given a task directory an earlier attempt left as the agent's user
    ctx = root_context(node_root, user_prefix, user_identity=TASK)
    (ctx.dirs.wd / "sub").mkdir(parents=True)
    (ctx.dirs.wd / "sub" / "old.txt").write_text("old")
    # When a task-scope attempt prepares it
    PrepareDirs().run(ctx)
    # Then everything in it is the task user's
    assert (ctx.dirs.wd / "sub" / "old.txt").stat().st_uid == ctx.run_as.uid
    assert (ctx.dirs.wd / "sub").stat().st_uid == ctx.run_as.uid


def test_an_undefined_username_fails_before_any_directory_exists(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, make_attempt_spec(user_identity=UserIdentitySpec(username="ghost")))
    with pytest.raises(IdentityError) as caught:
        PrepareDirs().run(ctx)
    assert caught.value.code == "UserIdentityNotFound"
    assert not ctx.dirs.task_dir.exists()
