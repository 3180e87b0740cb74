from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeagent.identity import IdentityResolver, UserNames
from nodeagent.layout import NodeLayout
from nodeagent.messages import (
    ApplicationPackageSpec,
    PoolConfig,
    StartTaskReport,
    StartTaskSpec,
    UserAccountSpec,
    UserIdentitySpec,
)
from nodeagent.poolconfig import ApplyDeps, NodeStatus, PoolConfigApplier
from nodeagent.testing import FakeBlobStore
from nodeagent.users import Accounts, lookup

from .identities import id_of
from .test_apppackages import make_zip


def config(version: str = "v1", start: StartTaskSpec | None = None, **fields: Any) -> PoolConfig:
    return PoolConfig(
        pool_id="pool-1", version=version, account_name="a", account_url="http://a", start_task=start, **fields
    )


def start_task(command: str, **fields: Any) -> StartTaskSpec:
    return StartTaskSpec(command_line=f"/bin/sh -c '{command}'", **fields)


@pytest.fixture
def make_applier(tmp_path: Path) -> Iterator[Callable[..., PoolConfigApplier]]:
    made: list[PoolConfigApplier] = []

    def make(root: Path = tmp_path, identities: IdentityResolver | None = None, **fields: Any) -> PoolConfigApplier:
        layout = NodeLayout(root)
        layout.create()
        deps = ApplyDeps(
            node_id="node-1",
            layout=layout,
            identities=identities or IdentityResolver(),
            blob=fields.pop("blob", FakeBlobStore()),
            agent_path="/usr/bin:/bin",
            kill_grace=0.5,
            retry_delay=0.01,
            **fields,
        )
        applier = PoolConfigApplier(deps)
        made.append(applier)
        return applier

    yield make
    for applier in made:
        applier.stop()


def start_report(applier: PoolConfigApplier) -> StartTaskReport:
    report = applier.status().start_task
    assert report is not None
    return report


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_node_without_config_is_starting(make_applier: Callable[..., PoolConfigApplier]) -> None:
    assert make_applier().status() == NodeStatus(readiness="starting", version="", start_task=None)


def test_a_config_without_start_task_makes_the_node_ready(make_applier: Callable[..., PoolConfigApplier]) -> None:
    applier = make_applier()
    assert applier.apply(config(), threading.Event())
    assert applier.status() == NodeStatus(readiness="ready", version="v1")


def test_pool_packages_are_installed(make_applier: Callable[..., PoolConfigApplier], tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/tool.zip": make_zip({"tool.sh": b"echo"})})
    package = ApplicationPackageSpec(application_id="tool", version="1", package_url="http://s/tool.zip")
    applier = make_applier(blob=blob)
    assert applier.apply(config(application_packages=[package]), threading.Event())
    assert (tmp_path / "applications" / "tool_1" / "tool.sh").exists()


def test_a_package_failure_keeps_the_node_starting(make_applier: Callable[..., PoolConfigApplier]) -> None:
    package = ApplicationPackageSpec(application_id="tool", version="1", package_url="http://s/missing.zip")
    applier = make_applier()
    assert not applier.apply(config(application_packages=[package]), threading.Event())
    assert applier.status() == NodeStatus(readiness="starting", version="")


def test_a_successful_start_task_makes_the_node_ready(make_applier: Callable[..., PoolConfigApplier]) -> None:
    applier = make_applier()
    applier.apply(config(start=start_task("exit 0")), threading.Event())
    status = applier.status()
    assert (status.readiness, status.version) == ("ready", "v1")
    assert status.start_task is not None and status.start_task.result == "success"


def test_a_failed_start_task_that_must_succeed_fails_the_node(make_applier: Callable[..., PoolConfigApplier]) -> None:
    applier = make_applier()
    applier.apply(config(start=start_task("exit 2", max_task_retry_count=1)), threading.Event())
    status = applier.status()
    assert (status.readiness, status.version) == ("starttaskfailed", "v1")
    assert status.start_task is not None
    assert (status.start_task.exit_code, status.start_task.retry_count) == (2, 1)


def test_a_failed_start_task_that_need_not_succeed_leaves_the_node_ready(
    make_applier: Callable[..., PoolConfigApplier],
) -> None:
    applier = make_applier()
    applier.apply(config(start=start_task("exit 2", wait_for_success=False)), threading.Event())
    status = applier.status()
    assert status.readiness == "ready"
    assert status.start_task is not None and status.start_task.result == "failure"


def test_an_undefined_start_task_user_fails_the_start_task(make_applier: Callable[..., PoolConfigApplier]) -> None:
    applier = make_applier()
    applier.apply(
        config(start=start_task("exit 0", user_identity=UserIdentitySpec(username="ghost"))), threading.Event()
    )
    status = applier.status()
    assert status.readiness == "starttaskfailed"
    assert status.start_task is not None and status.start_task.failure is not None
    assert status.start_task.failure.code == "UserIdentityNotFound"


def test_the_node_waits_while_a_start_task_that_must_succeed_runs(
    make_applier: Callable[..., PoolConfigApplier], tmp_path: Path
) -> None:
    # Given a start task that runs until a file appears
    applier = make_applier()
    applier.start()
    applier.offer(config(start=start_task(f"while [ ! -f {tmp_path}/go ]; do sleep 0.05; done")))
    # Then the node waits for it, reporting the running start task
    wait_for(lambda: applier.status().readiness == "waitingforstarttask")
    wait_for(lambda: applier.status().start_task is not None)
    assert start_report(applier).state == "running"
    # And is ready once it exits 0
    (tmp_path / "go").touch()
    wait_for(lambda: applier.status().readiness == "ready")


def test_a_start_task_that_need_not_succeed_is_ready_once_started(
    make_applier: Callable[..., PoolConfigApplier], tmp_path: Path
) -> None:
    applier = make_applier()
    applier.start()
    applier.offer(config(start=start_task("sleep 30", wait_for_success=False)))
    wait_for(lambda: applier.status().start_task is not None)
    assert applier.status().readiness == "ready"
    assert start_report(applier).state == "running"


def test_the_same_version_offered_again_is_not_applied_again(
    make_applier: Callable[..., PoolConfigApplier], tmp_path: Path
) -> None:
    applier = make_applier()
    applier.start()
    applier.offer(config(start=start_task(f"echo run >> {tmp_path}/runs.txt")))
    wait_for(lambda: applier.status().readiness == "ready")
    applier.offer(config(start=start_task(f"echo run >> {tmp_path}/runs.txt")))
    time.sleep(0.2)
    assert (tmp_path / "runs.txt").read_text() == "run\n"


def test_a_new_version_stops_the_old_start_task_and_runs_its_own(
    make_applier: Callable[..., PoolConfigApplier], tmp_path: Path
) -> None:
    # Given a start task of v1 still running
    applier = make_applier()
    applier.start()
    applier.offer(config("v1", start_task("sleep 60")))
    wait_for(lambda: applier.status().readiness == "waitingforstarttask")
    # When v2 arrives
    applier.offer(config("v2", start_task(f"echo v2 > {tmp_path}/v2.txt")))
    # Then v2's start task runs and the node is ready on v2
    wait_for(lambda: applier.status().version == "v2" and applier.status().readiness == "ready")
    assert (tmp_path / "v2.txt").read_text() == "v2\n"


def test_a_restarted_agent_runs_the_start_task_again(
    make_applier: Callable[..., PoolConfigApplier], tmp_path: Path
) -> None:
    command = start_task(f"echo run >> {tmp_path}/runs.txt")
    make_applier().apply(config(start=command), threading.Event())
    make_applier().apply(config(start=command), threading.Event())
    assert (tmp_path / "runs.txt").read_text() == "run\n" * 2


def test_stop_kills_a_running_start_task(make_applier: Callable[..., PoolConfigApplier]) -> None:
    applier = make_applier()
    applier.start()
    applier.offer(config(start=start_task("sleep 60")))
    wait_for(lambda: applier.status().start_task is not None)
    started = time.monotonic()
    applier.stop()
    assert time.monotonic() - started < 10


def test_accounts_are_created_and_the_start_task_runs_as_its_user(
    make_applier: Callable[..., PoolConfigApplier], node_root: Path, user_prefix: str
) -> None:
    # Given a config with an account and a start task running as the pool's non-admin user
    identities = IdentityResolver(Accounts(), UserNames(user_prefix))
    applier = make_applier(node_root, identities)
    account = UserAccountSpec(name=f"{user_prefix}ops", password="pw-Secret-1")
    # When it is applied
    applier.apply(config(start=start_task("id -u > uid.txt"), user_accounts=[account]), threading.Event())
    # Then the account exists, and the start task ran as the pool user, in a wd that user owns
    assert applier.status().readiness == "ready"
    assert lookup(account.name) is not None
    pool_user = lookup(f"{user_prefix}pool-nonadmin")
    assert pool_user is not None
    wd = node_root / "startup" / "wd"
    assert (wd / "uid.txt").read_text().strip() == str(pool_user.pw_uid)
    assert wd.stat().st_uid == pool_user.pw_uid and (wd.stat().st_mode & 0o777) == 0o755
    assert id_of(identities.ensure_account(account), wd, "-u") != str(pool_user.pw_uid)
