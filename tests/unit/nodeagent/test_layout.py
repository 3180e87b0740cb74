from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nodeagent.identity import RunAs
from nodeagent.layout import (
    NodeLayout,
    PathEscapeError,
    check_name,
    multi_instance_variables,
    safe_join,
    start_task_environment,
    task_environment,
)
from nodeagent.messages import (
    ApplicationPackageSpec,
    MultiInstanceSpec,
    PoolConfig,
    StartTaskSpec,
    UserIdentitySpec,
)
from nodeagent.testing import make_attempt_spec

RUN_AS = RunAs(uid=1000, gid=1000, groups=(), home="/home/u", username="batchuser")


def test_task_dirs_follow_the_azure_tree(tmp_path: Path) -> None:
    dirs = NodeLayout(tmp_path).task_dirs("myjob", "mytask")
    assert dirs.task_dir == tmp_path / "workitems" / "myjob" / "job-1" / "mytask"
    assert dirs.wd == dirs.task_dir / "wd"
    assert [p.name for p in (dirs.stdout, dirs.stderr, dirs.upload_out, dirs.upload_err)] == [
        "stdout.txt",
        "stderr.txt",
        "fileuploadout.txt",
        "fileuploaderr.txt",
    ]


def test_create_makes_the_node_tree(tmp_path: Path) -> None:
    NodeLayout(tmp_path).create()
    for name in ("shared", "startup", "workitems", "volatile/spool", "applications", "fsmounts"):
        assert (tmp_path / name).is_dir()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\0b"])
def test_unusable_ids_are_refused_as_directory_names(name: str) -> None:
    with pytest.raises(PathEscapeError):
        check_name(name)


def test_environment_has_the_batch_variables(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    spec = make_attempt_spec(job_id="j", task_id="t", account_url="http://host:8080")
    dirs = layout.task_dirs("j", "t")
    env = task_environment(layout, dirs, spec, RUN_AS, "/usr/bin:/bin")
    assert env["AZ_BATCH_ACCOUNT_URL"] == "http://host:8080/"
    assert env["AZ_BATCH_TASK_DIR"] == str(dirs.task_dir)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == str(dirs.wd)
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == str(tmp_path / "shared")
    assert env["AZ_BATCH_NODE_IS_DEDICATED"] == "true"
    assert env["AZ_BATCH_TASK_USER_IDENTITY"] == "PoolNonAdmin"
    assert env["HOME"] == str(dirs.wd)
    assert env["PATH"] == f"/usr/bin:/bin:{tmp_path / 'shared'}:{dirs.wd}"
    assert env["USER"] == env["LOGNAME"] == "batchuser"


def test_environment_does_not_inherit_the_agent_environment(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    spec = make_attempt_spec()
    env = task_environment(layout, layout.task_dirs("job-1", "task-1"), spec, RUN_AS, "/bin")
    assert set(env) - set(os.environ) >= {"AZ_BATCH_NODE_ID"}
    assert not any(name.startswith("NODEAGENT_") for name in env)


def test_user_settings_apply_but_cannot_replace_batch_variables(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    spec = make_attempt_spec(environment={"MY_VAR": "1", "PATH": "/custom", "AZ_BATCH_NODE_ID": "spoofed"})
    env = task_environment(layout, layout.task_dirs("job-1", "task-1"), spec, RUN_AS, "/bin")
    assert env["MY_VAR"] == "1"
    assert env["PATH"] == "/custom"
    assert env["AZ_BATCH_NODE_ID"] == "node-1"


@pytest.mark.parametrize(
    ("identity", "label"),
    [
        (UserIdentitySpec(username="alice"), "alice"),
        (UserIdentitySpec(auto_user_scope="task", elevation_level="admin"), "TaskAdmin"),
        (UserIdentitySpec(auto_user_scope="pool", elevation_level="admin"), "PoolAdmin"),
        (UserIdentitySpec(auto_user_scope="task"), "TaskNonAdmin"),
    ],
)
def test_user_identity_label(tmp_path: Path, identity: UserIdentitySpec, label: str) -> None:
    layout = NodeLayout(tmp_path)
    spec = make_attempt_spec(user_identity=identity)
    env = task_environment(layout, layout.task_dirs("job-1", "task-1"), spec, RUN_AS, "/bin")
    assert env["AZ_BATCH_TASK_USER_IDENTITY"] == label


def test_safe_join_keeps_nested_paths(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b/./c.txt") == tmp_path / "a" / "b" / "c.txt"


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "..\\x", "", ".", "a\0b", "C:\\x"])
def test_safe_join_refuses_escapes(tmp_path: Path, relative: str) -> None:
    with pytest.raises(PathEscapeError):
        safe_join(tmp_path, relative)


def test_safe_join_refuses_a_symlinked_parent_leading_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "link").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        safe_join(wd, "link/file.txt")


def test_create_sets_the_node_directory_modes(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    layout.create()
    modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("shared", "startup", "volatile")}
    assert modes == {"shared": 0o1777, "startup": 0o755, "volatile": 0o700}
    assert stat.S_IMODE(layout.applications.stat().st_mode) == 0o755


def test_environment_names_the_job_preparation_directories(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    spec = make_attempt_spec(job_id="j", task_id="t", job_preparation_task_id="jobpreparation")
    env = task_environment(layout, layout.task_dirs("j", "t"), spec, RUN_AS, "/bin")
    prep = layout.task_dirs("j", "jobpreparation")
    assert env["AZ_BATCH_JOB_PREP_DIR"] == str(prep.task_dir)
    assert env["AZ_BATCH_JOB_PREP_WORKING_DIR"] == str(prep.wd)
    plain = task_environment(layout, layout.task_dirs("j", "t"), make_attempt_spec(), RUN_AS, "/bin")
    assert "AZ_BATCH_JOB_PREP_DIR" not in plain


def test_environment_names_the_application_packages(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    package = ApplicationPackageSpec(application_id="Blender", version="2.7", package_url="u", is_default=True)
    spec = make_attempt_spec(application_packages=[package])
    env = task_environment(layout, layout.task_dirs("job-1", "task-1"), spec, RUN_AS, "/bin")
    assert env["AZ_BATCH_APP_PACKAGE_blender_2_7"] == env["AZ_BATCH_APP_PACKAGE_blender"]
    assert env["AZ_BATCH_APP_PACKAGE_blender"] == str(tmp_path / "applications" / "Blender_2.7")


def test_start_task_environment_has_no_job_or_task_id(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    package = ApplicationPackageSpec(application_id="tool", version="1", package_url="u")
    config = PoolConfig(
        pool_id="p",
        version="1",
        account_name="acct",
        account_url="http://acct",
        application_packages=[package],
        start_task=StartTaskSpec(command_line="x", environment={"AZ_BATCH_POOL_ID": "spoof", "MINE": "1"}),
    )
    env = start_task_environment(layout, config, "node-9", RUN_AS, "/bin")
    assert env["AZ_BATCH_POOL_ID"] == "p" and env["AZ_BATCH_NODE_ID"] == "node-9" and env["MINE"] == "1"
    assert env["AZ_BATCH_TASK_DIR"] == str(layout.startup)
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == env["HOME"] == str(layout.startup_wd)
    assert env["AZ_BATCH_TASK_USER_IDENTITY"] == "PoolNonAdmin"
    assert env["AZ_BATCH_APP_PACKAGE_tool_1"] == str(layout.applications / "tool_1")
    assert not {"AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID"} & set(env)


def test_a_multi_instance_task_knows_its_gang(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    instance = MultiInstanceSpec(
        subtask_id=1, number_of_instances=3, coordination_command_line="x", hosts=["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    )
    dirs = layout.task_dirs("job", "task")
    variables = multi_instance_variables(instance, dirs)
    assert variables["AZ_BATCH_HOST_LIST"] == "10.0.0.1,10.0.0.2,10.0.0.3"
    assert variables["AZ_BATCH_NODE_LIST"] == "10.0.0.1;10.0.0.2;10.0.0.3"
    assert variables["AZ_BATCH_MASTER_NODE"] == "10.0.0.1:6000"
    assert variables["AZ_BATCH_IS_CURRENT_NODE_MASTER"] == "false"
    assert variables["AZ_BATCH_TASK_SHARED_DIR"] == str(dirs.task_dir)
    assert variables["CCP_NODES"] == "3 10.0.0.1 1 10.0.0.2 1 10.0.0.3 1"
