from __future__ import annotations

from pathlib import Path

from nodeagent.steps import PrepareDirs
from nodeagent.steps.base import Step
from nodeagent.testing import make_context

_: Step = PrepareDirs()


def test_creates_the_working_directory_and_fresh_logs(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.dirs.task_dir.mkdir(parents=True)
    ctx.dirs.stdout.write_text("previous attempt")
    PrepareDirs().run(ctx)
    assert ctx.dirs.wd.is_dir()
    assert ctx.dirs.stdout.read_text() == ""
    assert ctx.dirs.upload_err.exists()


def test_is_idempotent(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    PrepareDirs().run(ctx)
    (ctx.dirs.wd / "keep.txt").write_text("k")
    PrepareDirs().run(ctx)
    assert (ctx.dirs.wd / "keep.txt").read_text() == "k"
