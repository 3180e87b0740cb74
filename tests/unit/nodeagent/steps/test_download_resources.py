from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nodeagent.errors import AttemptAbandoned, DownloadError
from nodeagent.identity import IdentityResolver, UserNames
from nodeagent.messages import ResourceFileSpec, UserIdentitySpec
from nodeagent.steps import DownloadResourceFiles, PrepareDirs
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.steps.download_resources import parse_file_mode
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context
from nodeagent.users import Accounts

_: Step = DownloadResourceFiles()


def context(tmp_path: Path, blob: FakeBlobStore, *files: ResourceFileSpec) -> TaskContext:
    deps = RunDeps(blob=blob, reporter=FakeReporter(), agent_path="/bin")
    ctx = make_context(tmp_path, make_attempt_spec(resource_files=list(files)), deps)
    PrepareDirs().run(ctx)
    return ctx


def test_downloads_and_applies_the_default_mode(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/a": b"A"})
    ctx = context(tmp_path, blob, ResourceFileSpec(http_url="http://s/a", file_path="dir/a.txt"))
    DownloadResourceFiles().run(ctx)
    path = ctx.dirs.wd / "dir" / "a.txt"
    assert path.read_bytes() == b"A"
    assert stat.S_IMODE(path.stat().st_mode) == 0o770


def test_applies_the_given_mode_without_special_bits(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/a": b"A"})
    ctx = context(tmp_path, blob, ResourceFileSpec(http_url="http://s/a", file_path="a.sh", file_mode="4755"))
    DownloadResourceFiles().run(ctx)
    assert stat.S_IMODE((ctx.dirs.wd / "a.sh").stat().st_mode) == 0o755


def test_invalid_mode_is_a_preprocessing_error() -> None:
    with pytest.raises(DownloadError) as caught:
        parse_file_mode("rwx")
    assert caught.value.code == "ResourceFileWriteFailed"


def test_failure_propagates_as_download_error(tmp_path: Path) -> None:
    ctx = context(tmp_path, FakeBlobStore(), ResourceFileSpec(http_url="http://s/none", file_path="x"))
    with pytest.raises(DownloadError) as caught:
        DownloadResourceFiles().run(ctx)
    assert caught.value.code == "BlobNotFound"


def test_rerun_skips_finished_downloads(tmp_path: Path) -> None:
    # Given a download that already finished in this attempt
    blob = FakeBlobStore(sources={"http://s/a": b"A"})
    ctx = context(tmp_path, blob, ResourceFileSpec(http_url="http://s/a", file_path="a.txt"))
    DownloadResourceFiles().run(ctx)
    # When the step runs again after the source disappeared
    blob.sources.clear()
    DownloadResourceFiles().run(ctx)
    # Then nothing was fetched again
    assert (ctx.dirs.wd / "a.txt").read_bytes() == b"A"


def test_cancelled_attempt_stops_downloading(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/a": b"A"})
    ctx = context(tmp_path, blob, ResourceFileSpec(http_url="http://s/a", file_path="a.txt"))
    ctx.cancel.set()
    with pytest.raises(AttemptAbandoned):
        DownloadResourceFiles().run(ctx)


def test_downloaded_files_belong_to_the_task_user(node_root: Path, user_prefix: str) -> None:
    # Given a task-scope identity and a resource file in a subdirectory
    blob = FakeBlobStore(sources={"http://s/a": b"A"})
    deps = RunDeps(
        blob=blob,
        reporter=FakeReporter(),
        agent_path="/bin",
        identities=IdentityResolver(Accounts(), UserNames(user_prefix)),
    )
    spec = make_attempt_spec(
        user_identity=UserIdentitySpec(auto_user_scope="task"),
        resource_files=[ResourceFileSpec(http_url="http://s/a", file_path="deep/dir/a.txt")],
    )
    ctx = make_context(node_root, spec, deps)
    PrepareDirs().run(ctx)
    # When it is downloaded
    DownloadResourceFiles().run(ctx)
    # Then the file and the directories made for it are the task user's
    for path in (ctx.dirs.wd / "deep", ctx.dirs.wd / "deep" / "dir", ctx.dirs.wd / "deep" / "dir" / "a.txt"):
        assert path.stat().st_uid == ctx.run_as.uid
    assert ctx.dirs.wd.stat().st_uid == ctx.run_as.uid
