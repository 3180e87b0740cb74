from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from nodeagent.errors import StepError, UploadError
from nodeagent.messages import OutputFileSpec, UploadHeader
from nodeagent.patterns import Match
from nodeagent.steps import PrepareDirs, RunCommandLine, UploadOutputFiles
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.steps.upload_outputs import blob_name, check_blob_name
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context

_: Step = UploadOutputFiles()


def ran(tmp_path: Path, command_line: str, blob: FakeBlobStore, *outputs: OutputFileSpec) -> TaskContext:
    deps = RunDeps(blob=blob, reporter=FakeReporter(), agent_path="/usr/bin:/bin")
    ctx = make_context(tmp_path, make_attempt_spec(command_line=command_line, output_files=list(outputs)), deps)
    PrepareDirs().run(ctx)
    with contextlib.suppress(StepError):
        RunCommandLine().run(ctx)
    return ctx


def test_no_op_when_the_process_never_started(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    ctx = ran(tmp_path, "missing-program", blob, OutputFileSpec(file_pattern="../std*.txt", container_url="u"))
    UploadOutputFiles().run(ctx)
    assert blob.uploaded == {} and not ctx.process_started


def test_wildcard_pattern_uploads_under_the_virtual_directory(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    ctx = ran(
        tmp_path,
        "/bin/sh -c 'mkdir -p o/s; echo 1 > o/a.txt; echo 2 > o/s/b.txt'",
        blob,
        OutputFileSpec(file_pattern="o/**/*.txt", container_url="http://c/x?sig=SECRET", path="results/"),
    )
    UploadOutputFiles().run(ctx)
    assert sorted(blob.uploaded) == ["results/a.txt", "results/s/b.txt"]
    log = ctx.dirs.upload_out.read_text()
    assert "results/a.txt" in log and "SECRET" not in log


def test_upload_condition_is_respected(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    ctx = ran(
        tmp_path,
        "/bin/sh -c 'echo x > f.txt; exit 1'",
        blob,
        OutputFileSpec(file_pattern="f.txt", container_url="u", path="ok", upload_condition="tasksuccess"),
        OutputFileSpec(file_pattern="f.txt", container_url="u", path="failed", upload_condition="taskfailure"),
    )
    UploadOutputFiles().run(ctx)
    assert list(blob.uploaded) == ["failed"]


def test_headers_are_passed_to_the_store(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    header = UploadHeader(name="Content-Type", value="text/plain")
    ctx = ran(
        tmp_path,
        "/bin/sh -c 'echo x > f.txt'",
        blob,
        OutputFileSpec(file_pattern="f.txt", container_url="u", upload_headers=[header]),
    )
    UploadOutputFiles().run(ctx)
    assert blob.targets[0].headers == (header,)


def test_one_failure_still_uploads_the_rest_then_fails(tmp_path: Path) -> None:
    # Given two outputs, one of which cannot be uploaded
    blob = FakeBlobStore(fail_uploads={"a.txt"})
    ctx = ran(
        tmp_path,
        "/bin/sh -c 'echo a > a.txt; echo b > b.txt'",
        blob,
        OutputFileSpec(file_pattern="*.txt", container_url="u"),
    )
    # When the finalizer runs
    with pytest.raises(UploadError) as caught:
        UploadOutputFiles().run(ctx)
    # Then the other file was uploaded, the error is logged and raised as a file upload error
    assert list(blob.uploaded) == ["b.txt"]
    assert caught.value.outcome == "upload_error"
    assert "a.txt" in ctx.dirs.upload_err.read_text()


def test_abandoned_attempt_uploads_nothing(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    ctx = ran(tmp_path, "/bin/sh -c 'echo x > f.txt'", blob, OutputFileSpec(file_pattern="f.txt", container_url="u"))
    ctx.abandoned = True
    UploadOutputFiles().run(ctx)
    assert blob.uploaded == {}


def test_environment_variables_in_patterns(tmp_path: Path) -> None:
    blob = FakeBlobStore()
    ctx = ran(
        tmp_path,
        "/bin/sh -c 'echo x > f.txt'",
        blob,
        OutputFileSpec(file_pattern="$AZ_BATCH_TASK_WORKING_DIR/f.txt", container_url="u", path="f"),
    )
    UploadOutputFiles().run(ctx)
    assert list(blob.uploaded) == ["f"]


@pytest.mark.parametrize(
    ("pattern", "path", "relative", "expected"),
    [
        ("out.txt", None, "out.txt", "out.txt"),
        ("out.txt", "dir/name.txt", "out.txt", "dir/name.txt"),
        ("*.txt", "dir", "a.txt", "dir/a.txt"),
        ("**/*.txt", None, "s/a.txt", "s/a.txt"),
    ],
)
def test_blob_name(pattern: str, path: str | None, relative: str, expected: str) -> None:
    assert blob_name(pattern, path, Match(Path("/x") / relative, relative)) == expected


@pytest.mark.parametrize("name", ["", "a/../b", "a\nb"])
def test_unsafe_blob_names_are_refused(name: str) -> None:
    with pytest.raises(UploadError):
        check_blob_name(name)
