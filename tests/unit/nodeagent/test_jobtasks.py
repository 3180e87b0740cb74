from __future__ import annotations

import threading
from pathlib import Path

from nodeagent.jobtasks import JobTasks
from nodeagent.layout import NodeLayout
from nodeagent.messages import JobPreparationSpec, JobTaskReport
from nodeagent.steps.base import RunDeps
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec

COUNT_RUNS = "/bin/sh -c 'echo run >> {log}; sleep 0.3; exit {code}'"


def _job_tasks(root: Path, boot: str = "boot-1") -> tuple[JobTasks, list[JobTaskReport]]:
    layout = NodeLayout(root)
    layout.create()
    deps = RunDeps(blob=FakeBlobStore(), reporter=FakeReporter(), agent_path="/usr/bin:/bin", kill_grace=1.0)
    sent: list[JobTaskReport] = []
    return JobTasks(layout, lambda: deps, sent.append, boot_id=boot, retry_delay=0.01), sent


def _preparation(log: Path, code: int = 0, **options: object) -> JobPreparationSpec:
    task = make_attempt_spec(
        attempt_id="jobprep-job", task_id="jobpreparation", command_line=COUNT_RUNS.format(log=log, code=code)
    )
    return JobPreparationSpec.model_validate({"task": task, **options})


def test_concurrent_attempts_of_a_job_wait_for_one_preparation(tmp_path: Path) -> None:
    jobs, sent = _job_tasks(tmp_path / "node")
    runs = tmp_path / "runs"
    results: list[bool] = []
    workers = [
        threading.Thread(target=lambda: results.append(jobs.prepare(_preparation(runs), threading.Event())))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert results == [True, True, True]
    assert runs.read_text().splitlines() == ["run"]
    assert [(report.state, report.result) for report in sent] == [("running", None), ("completed", "success")]
    assert sent[-1].task_root_directory == "workitems/job-1/job-1/jobpreparation"


def test_a_failed_preparation_is_retried_then_refuses_the_jobs_attempts(tmp_path: Path) -> None:
    jobs, sent = _job_tasks(tmp_path / "node")
    runs = tmp_path / "runs"
    preparation = _preparation(runs, code=3, max_task_retry_count=2)
    assert not jobs.prepare(preparation, threading.Event())
    assert len(runs.read_text().splitlines()) == 3
    final = sent[-1]
    assert (final.exit_code, final.result, final.retry_count) == (3, "failure", 2)
    # A later attempt of the job does not run it again
    assert not jobs.prepare(preparation, threading.Event())
    assert len(runs.read_text().splitlines()) == 3


def test_after_an_agent_restart_preparation_reruns_only_when_asked(tmp_path: Path) -> None:
    root, runs = tmp_path / "node", tmp_path / "runs"
    first, _ = _job_tasks(root, boot="boot-1")
    assert first.prepare(_preparation(runs), threading.Event())
    kept, _ = _job_tasks(root, boot="boot-2")
    assert kept.prepare(_preparation(runs, rerun_on_node_reboot_after_success=False), threading.Event())
    assert len(runs.read_text().splitlines()) == 1
    rerun, _ = _job_tasks(root, boot="boot-3")
    assert rerun.prepare(_preparation(runs), threading.Event())
    assert len(runs.read_text().splitlines()) == 2


def test_a_release_runs_once_in_the_background(tmp_path: Path) -> None:
    jobs, sent = _job_tasks(tmp_path / "node")
    runs = tmp_path / "runs"
    release = make_attempt_spec(
        attempt_id="jobrelease-job", task_id="jobrelease", command_line=COUNT_RUNS.format(log=runs, code=0)
    )
    jobs.release(release)
    jobs.release(release)
    deadline = threading.Event()
    for _ in range(100):
        if any(report.state == "completed" for report in sent):
            break
        deadline.wait(0.05)
    jobs.release(release)
    assert runs.read_text().splitlines() == ["run"]
    assert [(report.kind, report.state, report.result) for report in sent][-1] == ("release", "completed", "success")


def test_a_preparation_stopped_half_way_runs_again_with_the_next_attempt(tmp_path: Path) -> None:
    jobs, sent = _job_tasks(tmp_path / "node")
    runs = tmp_path / "runs"
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    assert not jobs.prepare(_preparation(runs), cancel)
    assert all(report.state == "running" for report in sent)
    assert jobs.prepare(_preparation(runs), threading.Event())
    assert runs.read_text().splitlines() == ["run", "run"]


def test_a_job_added_again_with_the_same_id_prepares_again(tmp_path: Path) -> None:
    jobs, _ = _job_tasks(tmp_path / "node")
    runs = tmp_path / "runs"
    assert jobs.prepare(_preparation(runs), threading.Event())
    again = _preparation(runs)
    again = again.model_copy(update={"task": again.task.model_copy(update={"attempt_id": "jobprep-job-20261121"})})
    assert jobs.prepare(again, threading.Event())
    assert runs.read_text().splitlines() == ["run", "run"]
