"""Container tasks: argv building as pure functions, runtime detection and the step with real processes.

No container engine runs on the test hosts (only the Docker client exists, without a daemon), so no
container is ever started here: runs use a stand-in `docker` script that records what it was given.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nodeagent import container
from nodeagent.container import BindMount, ContainerRuntime, RunRequest
from nodeagent.errors import StepError
from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptSpec, BindMountSpec, ContainerSpec
from nodeagent.process import ToolResult
from nodeagent.steps import PrepareDirs, RunCommandLine
from nodeagent.steps.base import RunDeps, TaskContext
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context

RUNTIME = ContainerRuntime("docker", "/usr/bin/docker")
ROOT = Path("/batch")
LAYOUT = NodeLayout(ROOT)
DIRS = LAYOUT.task_dirs("job-1", "task-1")


def request(settings: ContainerSpec, spec: AttemptSpec | None = None, env: dict[str, str] | None = None) -> RunRequest:
    attempt = spec or make_attempt_spec(container=settings)
    return RunRequest(
        runtime=RUNTIME,
        spec=attempt,
        container=settings,
        command=("python", "-c", "print('a b')"),
        env=env if env is not None else {"AZ_BATCH_TASK_ID": "task-1", "SECRET": "hunter2", "PATH": "/x"},
        mounts=container.bind_mounts(settings, LAYOUT, DIRS, attempt),
        working_dir=DIRS.wd,
    )


def test_default_run_argv() -> None:
    argv = container.run_argv(request(ContainerSpec(image_name="ubuntu")))
    assert argv == (
        "/usr/bin/docker", "run", "--rm", "--name", "attempt-1", "--init",
        "-e", "AZ_BATCH_TASK_ID", "-e", "SECRET",
        "-v", "/batch:/batch",
        "-w", "/batch/workitems/job-1/job-1/task-1/wd",
        "ubuntu:latest", "python", "-c", "print('a b')",
    )  # fmt: skip


def test_environment_values_never_reach_the_command_line() -> None:
    argv = container.run_argv(request(ContainerSpec(image_name="ubuntu")))
    assert not any("hunter2" in arg for arg in argv)
    assert "PATH" not in argv


def test_image_default_image_working_directory_has_no_w_flag() -> None:
    argv = container.run_argv(request(ContainerSpec(image_name="a", working_directory="containerImageDefault")))
    assert "-w" not in argv


def test_run_options_are_split_and_come_before_the_image() -> None:
    settings = ContainerSpec(image_name="img:1", run_options="--cpus 2 --label 'a b' -e X=1")
    argv = container.run_argv(request(settings))
    index = argv.index("img:1")
    assert argv[index - 6 : index] == ("--cpus", "2", "--label", "a b", "-e", "X=1")


def test_unbalanced_run_options_are_invalid_settings() -> None:
    with pytest.raises(StepError) as caught:
        container.run_argv(request(ContainerSpec(image_name="i", run_options="--label 'open")))
    assert caught.value.code == container.INVALID_SETTINGS


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ubuntu", "ubuntu:latest"),
        ("ubuntu:22.04", "ubuntu:22.04"),
        ("myreg:5000/team/app", "myreg:5000/team/app:latest"),
        ("myreg:5000/team/app:v1", "myreg:5000/team/app:v1"),
        ("app@sha256:abcd", "app@sha256:abcd"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ],
)
def test_image_reference(image: str, expected: str) -> None:
    assert container.image_reference(image) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Shared", "/batch/shared"),
        ("Startup", "/batch/startup"),
        ("VfsMounts", "/batch/fsmounts"),
        ("Task", "/batch/workitems/job-1/job-1/task-1"),
        ("JobPrep", "/batch/workitems/job-1/job-1/prep"),
        ("Applications", "/batch/applications"),
    ],
)
def test_each_bind_source_maps_to_its_host_directory(source: str, expected: str) -> None:
    settings = ContainerSpec(image_name="i", bind_mounts=[BindMountSpec(source=source)])
    spec = make_attempt_spec(container=settings, job_preparation_task_id="prep")
    assert container.bind_mounts(settings, LAYOUT, DIRS, spec) == [BindMount(Path(expected))]


def test_read_only_mounts_end_with_ro() -> None:
    settings = ContainerSpec(
        image_name="i", bind_mounts=[BindMountSpec(source="Shared", read_only=True), BindMountSpec(source="Task")]
    )
    argv = container.run_argv(request(settings))
    mounts = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-v"]
    assert mounts == ["/batch/shared:/batch/shared:ro", f"{DIRS.task_dir}:{DIRS.task_dir}"]


def test_empty_bind_mount_list_mounts_nothing() -> None:
    assert "-v" not in container.run_argv(request(ContainerSpec(image_name="i", bind_mounts=[])))


def test_job_prep_without_a_preparation_task_is_not_mounted() -> None:
    settings = ContainerSpec(image_name="i", bind_mounts=[BindMountSpec(source="JobPrep")])
    assert container.bind_mounts(settings, LAYOUT, DIRS, make_attempt_spec(container=settings)) == []


def test_duplicate_bind_sources_are_rejected() -> None:
    settings = ContainerSpec(
        image_name="i", bind_mounts=[BindMountSpec(source="Shared"), BindMountSpec(source="Shared", read_only=True)]
    )
    with pytest.raises(StepError) as caught:
        container.bind_mounts(settings, LAYOUT, DIRS, make_attempt_spec(container=settings))
    assert caught.value.code == container.INVALID_SETTINGS
    assert "Shared" in caught.value.message


def test_paths_that_break_the_v_syntax_are_rejected() -> None:
    with pytest.raises(StepError):
        BindMount(Path("/a:b")).flag()


def test_attempt_ids_that_are_not_container_names_are_rejected() -> None:
    settings = ContainerSpec(image_name="i")
    with pytest.raises(StepError):
        container.run_argv(request(settings, make_attempt_spec(attempt_id="-bad", container=settings)))


def test_login_argv_reads_the_password_from_stdin() -> None:
    settings = ContainerSpec(
        image_name="i", registry_server="reg.example", registry_username="u", registry_password="p"
    )
    assert container.login_argv(RUNTIME, settings, Path("/cfg")) == (
        "/usr/bin/docker", "--config", "/cfg", "login", "reg.example", "-u", "u", "--password-stdin",
    )  # fmt: skip
    default = ContainerSpec(image_name="i", registry_username="u", registry_password="p")
    assert container.login_argv(RUNTIME, default, Path("/cfg"))[4] == "docker.io"


def test_podman_keeps_credentials_in_an_authfile() -> None:
    podman = ContainerRuntime("podman", "/usr/bin/podman")
    settings = ContainerSpec(image_name="i", registry_username="u", registry_password="p", bind_mounts=[])
    assert container.login_argv(podman, settings, Path("/cfg"))[:4] == (
        "/usr/bin/podman", "login", "--authfile", "/cfg/auth.json",
    )  # fmt: skip
    run = container.run_argv(replace(request(settings), runtime=podman, config_dir=Path("/cfg")))
    assert run[:4] == ("/usr/bin/podman", "run", "--authfile", "/cfg/auth.json")


def test_a_failed_login_is_login_failed_without_the_password() -> None:
    def tool(argv: Sequence[str], stdin: bytes) -> ToolResult:
        return ToolResult(1, f"denied for password {stdin.decode()}")

    settings = ContainerSpec(image_name="i", registry_username="u", registry_password="pw-123")
    with pytest.raises(StepError) as caught:
        container.login(RUNTIME, settings, Path("/cfg"), tool)
    assert caught.value.code == container.LOGIN_FAILED
    assert "pw-123" not in caught.value.message and "denied" in caught.value.message


def test_the_password_is_not_in_the_settings_repr() -> None:
    assert "pw-secret" not in repr(ContainerSpec(image_name="i", registry_password="pw-secret"))


def test_no_runtime_answers_on_this_host_without_an_engine(tmp_path: Path) -> None:
    # Given PATH with only a runtime client whose engine is not reachable (a stand-in exiting 1 for `version`)
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    # When the agent looks for a runtime, Then there is none
    assert container.detect_runtime(str(tmp_path)) is None
    assert container.heartbeat_value(None) is None


def test_a_runtime_answering_version_is_detected(tmp_path: Path) -> None:
    fake = tmp_path / "podman"
    fake.write_text('#!/bin/sh\n[ "$1" = version ] && echo 5.0\n')
    fake.chmod(0o755)
    found = container.detect_runtime(str(tmp_path))
    assert found == ContainerRuntime("podman", str(fake))
    assert container.heartbeat_value(found) == "podman"


def test_the_real_docker_client_without_daemon_is_not_a_runtime() -> None:
    client = shutil.which("docker")
    if client is None:
        pytest.skip("no docker client on this host")
    assert container.detect_runtime(str(Path(client).parent)) is None


def step_context(root: Path, settings: ContainerSpec, runtime: ContainerRuntime | None, **deps: object) -> TaskContext:
    run_deps = RunDeps(
        blob=FakeBlobStore(),
        reporter=FakeReporter(),
        agent_path="/usr/bin:/bin",
        kill_grace=0.5,
        container_runtime=runtime,
        **deps,  # type: ignore[arg-type]
    )
    spec = make_attempt_spec(command_line="python -c 'print(1)'", container=settings, environment={"SECRET": "s3"})
    ctx = make_context(root, spec, run_deps)
    PrepareDirs().run(ctx)
    return ctx


def test_container_task_without_runtime_is_a_preprocessing_error(tmp_path: Path) -> None:
    # Given a node without a container runtime
    ctx = step_context(tmp_path / "node", ContainerSpec(image_name="ubuntu"), None)
    # When a container task's command step runs
    with pytest.raises(StepError) as caught:
        RunCommandLine().run(ctx)
    # Then it fails before starting anything, as a pre-processing error
    assert (caught.value.code, caught.value.outcome) == ("ContainerRuntimeNotAvailable", "preprocessing_error")
    assert not ctx.process_started


def recording_runtime(tmp_path: Path) -> ContainerRuntime:
    """A stand-in runtime appending its argv, environment and stdin (for login) as JSON lines to calls.jsonl."""
    script = tmp_path / "bin" / "docker"
    script.parent.mkdir()
    record = tmp_path / "calls.jsonl"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "stdin = sys.stdin.read() if 'login' in sys.argv else ''\n"
        "call = {'argv': sys.argv[1:], 'env': dict(os.environ), 'stdin': stdin}\n"
        f"open({str(record)!r}, 'a').write(json.dumps(call) + '\\n')\n"
    )
    script.chmod(0o755)
    return ContainerRuntime("docker", str(script))


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_container_task_runs_the_runtime_with_values_in_its_environment(tmp_path: Path) -> None:
    # Given a node whose runtime records what it is given
    runtime = recording_runtime(tmp_path)
    ctx = step_context(tmp_path / "node", ContainerSpec(image_name="py", bind_mounts=[]), runtime)
    # When the container task runs
    RunCommandLine().run(ctx)
    # Then the runtime got names on its command line and values in its environment
    (seen,) = calls(tmp_path)
    assert seen["argv"][:5] == ["run", "--rm", "--name", "attempt-1", "--init"]
    assert seen["argv"][-4:] == ["py:latest", "python", "-c", "print(1)"]
    assert "SECRET" in seen["argv"] and "s3" not in " ".join(seen["argv"])
    assert seen["env"]["SECRET"] == "s3"
    assert ctx.exit_code == 0


def test_login_runs_first_with_a_private_config_that_is_removed(tmp_path: Path) -> None:
    # Given registry credentials and a runtime that records its calls
    runtime = recording_runtime(tmp_path)
    settings = ContainerSpec(
        image_name="reg.example/app", registry_server="reg.example", registry_username="u",
        registry_password="pw-secret", bind_mounts=[],
    )  # fmt: skip
    ctx = step_context(tmp_path / "node", settings, runtime)
    # When the task runs
    RunCommandLine().run(ctx)
    # Then login got the password on stdin only, and run used the same private config, gone afterwards
    login, run = calls(tmp_path)
    config = login["argv"][1]
    assert login["argv"] == ["--config", config, "login", "reg.example", "-u", "u", "--password-stdin"]
    assert login["stdin"] == "pw-secret"
    assert run["argv"][:3] == ["--config", config, "run"]
    assert not any("pw-secret" in arg for arg in login["argv"] + run["argv"])
    assert not os.path.exists(config)


def test_a_failed_login_never_starts_the_container(tmp_path: Path) -> None:
    runtime = ContainerRuntime("docker", "/bin/false")
    settings = ContainerSpec(image_name="i", registry_username="u", registry_password="p")
    ctx = step_context(tmp_path / "node", settings, runtime)
    with pytest.raises(StepError) as caught:
        RunCommandLine().run(ctx)
    assert caught.value.code == container.LOGIN_FAILED
    assert not ctx.process_started
    assert list((ctx.layout.volatile / "containers").iterdir()) == []
