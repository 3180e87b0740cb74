"""Turning stored specs into what nodes get."""

from __future__ import annotations

from controller.services import specs

POOL = {
    "userAccounts": [
        {
            "name": "Alice",
            "password": "pw",
            "elevationLevel": "admin",
            "linuxUserConfiguration": {"uid": 1500, "gid": 1500},
        },
        {"name": "bob", "password": "pw2"},
    ]
}


def test_task_environment_overrides_the_jobs_common_settings() -> None:
    merged = specs.environment(
        [{"name": "A", "value": "job"}, {"name": "B", "value": "job"}], [{"name": "A", "value": "task"}]
    )
    assert merged == {"A": "task", "B": "job"}


def test_named_identity_resolves_to_the_pool_account_ignoring_case() -> None:
    account = specs.account_for(specs.identity({"userIdentity": {"username": "alice"}}), POOL)
    assert account is not None
    assert (account.name, account.uid, account.gid, account.elevation_level) == ("Alice", 1500, 1500, "admin")


def test_identity_the_pool_does_not_define_resolves_to_none() -> None:
    assert specs.account_for(specs.identity({"userIdentity": {"username": "mallory"}}), POOL) is None


def test_default_identity_is_the_pools_non_admin_auto_user() -> None:
    identity = specs.identity({})
    assert (identity.username, identity.auto_user_scope, identity.elevation_level) == (None, "pool", "nonadmin")


def test_container_bind_mounts_none_means_the_whole_node_root() -> None:
    whole = specs.container({"imageName": "ubuntu"})
    some = specs.container(
        {"imageName": "ubuntu", "containerHostBatchBindMounts": [{"source": "Task", "isReadOnly": True}]}
    )
    assert whole is not None and whole.bind_mounts is None
    assert some is not None and some.bind_mounts is not None
    assert [(m.source, m.read_only) for m in some.bind_mounts] == [("Task", True)]


def test_preparation_task_id_defaults_to_jobpreparation() -> None:
    assert specs.preparation_id({"jobPreparationTask": {"commandLine": "x"}}) == "jobpreparation"
    assert specs.preparation_id({"jobPreparationTask": {"id": "prep", "commandLine": "x"}}) == "prep"
    assert specs.preparation_id({}) is None


def test_durations_in_seconds() -> None:
    assert specs.seconds("PT1M30S") == 90.0
    assert specs.seconds(None) is None


def test_task_package_references_override_the_pools_for_the_same_application() -> None:
    pool = {"applicationPackageReferences": [{"applicationId": "Tool", "version": "1"}, {"applicationId": "lib"}]}
    task = {"applicationPackageReferences": [{"applicationId": "tool", "version": "2"}]}
    assert specs.package_references(pool, task) == [{"applicationId": "lib"}, {"applicationId": "tool", "version": "2"}]
