from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from nodeagent import runner
from nodeagent.errors import AttemptAbandoned, CommandFailed, DownloadError, StepError, UploadError
from nodeagent.identity import IdentityResolver, UserNames
from nodeagent.layout import NodeLayout
from nodeagent.messages import FailureCategory, OutputFileSpec, ResourceFileSpec, UserIdentitySpec
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context
from nodeagent.users import Accounts


@dataclass
class Recorder:
    calls: list[str] = field(default_factory=list)


class FakeStep:
    """A step that records its name and optionally raises."""

    name: ClassVar[str] = "Fake"
    category: ClassVar[FailureCategory] = "usererror"

    def __init__(self, label: str, recorder: Recorder, error: BaseException | None = None) -> None:
        self.label = label
        self.recorder = recorder
        self.error = error

    def run(self, ctx: TaskContext) -> None:
        self.recorder.calls.append(self.label)
        if self.error is not None:
            raise self.error


_: Step = FakeStep("x", Recorder())


def test_steps_run_in_order_then_finalizers(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    runner.run_steps(ctx, [FakeStep("a", rec), FakeStep("b", rec)], [FakeStep("up", rec), FakeStep("report", rec)])
    assert rec.calls == ["a", "b", "up", "report"]
    assert ctx.failure is None


def test_a_failing_step_stops_the_main_steps_but_not_the_finalizers(tmp_path: Path) -> None:
    # Given a download step that fails
    rec = Recorder()
    ctx = make_context(tmp_path)
    failing = FakeStep("download", rec, DownloadError("BlobNotFound", "missing"))
    # When the pipeline runs
    runner.run_steps(
        ctx,
        [FakeStep("prepare", rec), failing, FakeStep("run", rec)],
        [FakeStep("upload", rec), FakeStep("report", rec)],
    )
    # Then the command never runs, finalizers do, and the failure is the download's
    assert rec.calls == ["prepare", "download", "upload", "report"]
    assert ctx.failure is not None and ctx.failure.code == "BlobNotFound"
    assert ctx.failure.outcome == "preprocessing_error"


def test_the_first_failure_wins(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    runner.run_steps(
        ctx,
        [FakeStep("run", rec, CommandFailed("FailureExitCode", "exit 1"))],
        [FakeStep("upload", rec, UploadError("FileUploadFailed", "nope"))],
    )
    assert ctx.failure is not None and ctx.failure.code == "FailureExitCode"


def test_an_unexpected_exception_is_an_internal_server_error(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    runner.run_steps(ctx, [FakeStep("bug", rec, RuntimeError("boom sig=abc"))], [FakeStep("report", rec)])
    assert rec.calls == ["bug", "report"]
    assert ctx.failure is not None
    assert (ctx.failure.code, ctx.failure.category) == ("AgentInternalError", "servererror")
    assert "sig=abc" not in ctx.failure.message


def test_finalizers_run_even_when_a_step_raises_base_exception(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        runner.run_steps(ctx, [FakeStep("run", rec, KeyboardInterrupt())], [FakeStep("report", rec)])
    assert rec.calls == ["run", "report"]


def test_abandoned_attempt_is_marked(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    runner.run_steps(ctx, [FakeStep("run", rec, AttemptAbandoned("a"))], [FakeStep("report", rec)])
    assert ctx.abandoned and ctx.failure is None


def test_failing_finalizer_does_not_stop_the_next(tmp_path: Path) -> None:
    rec = Recorder()
    ctx = make_context(tmp_path)
    runner.run_steps(ctx, [], [FakeStep("upload", rec, StepError("X", "y")), FakeStep("report", rec)])
    assert rec.calls == ["upload", "report"]


def _deps(blob: FakeBlobStore, reporter: FakeReporter) -> RunDeps:
    return RunDeps(blob=blob, reporter=reporter, agent_path="/usr/bin:/bin", kill_grace=0.5)


def test_full_run_success_uploads_and_reports(tmp_path: Path) -> None:
    # Given a task that reads a resource file and writes an output
    blob = FakeBlobStore(sources={"http://src/in.txt": b"input"})
    reporter = FakeReporter()
    spec = make_attempt_spec(
        command_line="/bin/sh -c 'cat in.txt > out.txt; echo done'",
        resource_files=[ResourceFileSpec(http_url="http://src/in.txt", file_path="in.txt")],
        output_files=[
            OutputFileSpec(file_pattern="out.txt", container_url="http://c/out?sig=x", path="r/out.txt"),
            OutputFileSpec(file_pattern="../std*.txt", container_url="http://c/out", path="logs"),
        ],
    )
    # When the attempt runs
    ctx = runner.run(spec, NodeLayout(tmp_path), _deps(blob, reporter))
    # Then the outputs were uploaded and a successful report was delivered
    assert blob.uploaded == {"r/out.txt": b"input", "logs/stdout.txt": b"done\n", "logs/stderr.txt": b""}
    ((attempt_id, report),) = reporter.reports
    assert (attempt_id, report.outcome, report.exit_code, report.failure) == ("attempt-1", "exited", 0, None)
    assert report.start_time is not None and report.end_time >= report.start_time
    assert not NodeLayout(tmp_path).state_file("attempt-1").exists()
    assert ctx.report == report


def test_full_run_non_zero_exit(tmp_path: Path) -> None:
    reporter = FakeReporter()
    spec = make_attempt_spec(command_line="/bin/sh -c 'exit 4'")
    runner.run(spec, NodeLayout(tmp_path), _deps(FakeBlobStore(), reporter))
    report = reporter.reports[0][1]
    assert (report.outcome, report.exit_code) == ("exited", 4)
    assert report.failure is not None
    assert (report.failure.code, report.failure.category) == ("FailureExitCode", "usererror")


def test_full_run_missing_resource_never_runs_the_command(tmp_path: Path) -> None:
    reporter = FakeReporter()
    blob = FakeBlobStore()
    spec = make_attempt_spec(
        command_line="/bin/touch ran",
        resource_files=[ResourceFileSpec(http_url="http://src/missing", file_path="m")],
        output_files=[OutputFileSpec(file_pattern="*", container_url="http://c/out")],
    )
    runner.run(spec, NodeLayout(tmp_path), _deps(blob, reporter))
    report = reporter.reports[0][1]
    assert (report.outcome, report.exit_code) == ("preprocessing_error", None)
    assert report.failure is not None and report.failure.code == "BlobNotFound"
    assert blob.uploaded == {}
    assert not (NodeLayout(tmp_path).task_dirs("job-1", "task-1").wd / "ran").exists()


def test_full_run_timeout(tmp_path: Path) -> None:
    reporter = FakeReporter()
    spec = make_attempt_spec(command_line="/bin/sleep 30", max_wall_clock_seconds=0.3)
    runner.run(spec, NodeLayout(tmp_path), _deps(FakeBlobStore(), reporter))
    report = reporter.reports[0][1]
    assert report.outcome == "timed_out"
    assert report.failure is not None and report.failure.code == "MaxWallClockTimeExceeded"


def test_full_run_upload_failure(tmp_path: Path) -> None:
    reporter = FakeReporter()
    blob = FakeBlobStore(fail_uploads={"out.txt"})
    spec = make_attempt_spec(
        command_line="/bin/sh -c 'echo x > out.txt'",
        output_files=[OutputFileSpec(file_pattern="out.txt", container_url="http://c/o")],
    )
    runner.run(spec, NodeLayout(tmp_path), _deps(blob, reporter))
    report = reporter.reports[0][1]
    assert (report.outcome, report.exit_code) == ("upload_error", 0)
    assert report.failure is not None and report.failure.code == "FileUploadFailed"
    assert "out.txt" in report.failure.message


def test_program_not_found(tmp_path: Path) -> None:
    reporter = FakeReporter()
    runner.run(
        make_attempt_spec(command_line="does-not-exist --flag"), NodeLayout(tmp_path), _deps(FakeBlobStore(), reporter)
    )
    report = reporter.reports[0][1]
    assert report.outcome == "preprocessing_error"
    assert report.failure is not None and report.failure.code == "CommandProgramNotFound"


def test_the_pipeline_prepares_the_job_then_installs_packages_before_resource_files() -> None:
    assert [step.name for step in runner.default_steps()] == [
        "PrepareDirs",
        "RunJobPreparation",
        "InstallPackages",
        "DownloadResourceFiles",
        "RunCommandLine",
    ]


def test_an_undefined_user_identity_is_reported_as_a_preprocessing_error(tmp_path: Path) -> None:
    # Given an attempt naming a user the pool does not define
    reporter = FakeReporter()
    spec = make_attempt_spec(user_identity=UserIdentitySpec(username="ghost"))
    # When it runs
    ctx = runner.run(spec, NodeLayout(tmp_path), _deps(FakeBlobStore(), reporter))
    # Then it fails before its command with UserIdentityNotFound, and the report says so
    assert ctx.process is None
    ((attempt_id, report),) = reporter.reports
    assert report.outcome == "preprocessing_error"
    assert report.failure is not None and (report.failure.code, report.failure.category) == (
        "UserIdentityNotFound",
        "usererror",
    )


def test_a_task_scope_attempt_runs_as_its_own_account(node_root: Path, user_prefix: str) -> None:
    # Given an attempt with a task-scope identity on a root agent
    reporter = FakeReporter()
    deps = RunDeps(
        blob=FakeBlobStore(),
        reporter=reporter,
        agent_path="/usr/bin:/bin",
        kill_grace=0.5,
        identities=IdentityResolver(Accounts(), UserNames(user_prefix)),
    )
    spec = make_attempt_spec(
        command_line="/bin/sh -c 'id -u; id -G; echo x > out.txt'",
        user_identity=UserIdentitySpec(auto_user_scope="task"),
    )
    NodeLayout(node_root).create()
    # When it runs through the whole pipeline
    ctx = runner.run(spec, NodeLayout(node_root), deps)
    # Then it ran as the task's account, which owns its output and logs
    assert reporter.reports[0][1].exit_code == 0
    uid, groups = ctx.dirs.stdout.read_text().split("\n")[:2]
    assert (uid, groups) == (str(ctx.run_as.uid), str(ctx.run_as.gid))
    assert ctx.run_as.username == deps.identities.names.task_user(spec.job_id, spec.task_id)
    for path in (ctx.dirs.stdout, ctx.dirs.wd / "out.txt"):
        assert path.stat().st_uid == ctx.run_as.uid


def test_multi_instance_instances_coordinate_and_only_the_primary_runs_and_reports() -> None:
    settings = {"subtask_id": 0, "number_of_instances": 3, "coordination_command_line": "/bin/true"}
    primary = make_attempt_spec(multi_instance=settings)
    subtask = make_attempt_spec(multi_instance={**settings, "subtask_id": 2})
    steps, finalizers = runner.steps_for(primary)
    assert [step.name for step in steps][-3:] == ["DownloadResourceFiles", "Coordinate", "RunCommandLine"]
    assert [step.name for step in finalizers] == ["StopCoordination", "UploadOutputFiles", "ReportResult"]
    steps, finalizers = runner.steps_for(subtask)
    assert [step.name for step in steps][-2:] == ["DownloadCommonResourceFiles", "Coordinate"]
    assert [step.name for step in finalizers] == ["StopCoordination", "ReportUncoordinated"]
