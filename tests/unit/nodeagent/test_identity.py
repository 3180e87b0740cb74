from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from nodeagent import process
from nodeagent.errors import IdentityError
from nodeagent.identity import IdentityResolver, UserNames, current_user, identity_label
from nodeagent.messages import StartTaskSpec, UserAccountSpec, UserIdentitySpec
from nodeagent.testing import make_attempt_spec
from nodeagent.users import Accounts

from .conftest import free_id
from .identities import id_of

TASK_NONADMIN = UserIdentitySpec(auto_user_scope="task")
POOL_NONADMIN = UserIdentitySpec(auto_user_scope="pool")


def resolver(prefix: str, accounts: Accounts | None = None) -> IdentityResolver:
    return IdentityResolver(accounts or Accounts(), UserNames(prefix))


def test_task_scope_runs_as_a_fresh_account_without_supplementary_groups(user_prefix: str, tmp_path: Path) -> None:
    # Given a task-scope non-admin identity
    identities = resolver(user_prefix)
    spec = make_attempt_spec(job_id="j", task_id="t", user_identity=TASK_NONADMIN)
    # When it is resolved
    run_as = identities.for_attempt(spec, tmp_path)
    # Then the process runs as the task's own account, in its own group only
    entry = pwd.getpwnam(identities.names.task_user("j", "t"))
    assert id_of(run_as, tmp_path, "-u") == str(entry.pw_uid) != "0"
    assert id_of(run_as, tmp_path, "-G") == str(entry.pw_gid)
    assert grp.getgrgid(entry.pw_gid).gr_name == entry.pw_name
    assert identities.task_user(spec) == entry.pw_name


def test_each_task_gets_its_own_account(user_prefix: str, tmp_path: Path) -> None:
    identities = resolver(user_prefix)
    first = identities.for_attempt(make_attempt_spec(task_id="a", user_identity=TASK_NONADMIN), tmp_path)
    second = identities.for_attempt(make_attempt_spec(task_id="b", user_identity=TASK_NONADMIN), tmp_path)
    assert first.uid != second.uid
    assert len(first.username) <= 32


def test_pool_scope_shares_one_account_per_elevation(user_prefix: str, tmp_path: Path) -> None:
    identities = resolver(user_prefix)
    first = identities.for_attempt(make_attempt_spec(task_id="a", user_identity=POOL_NONADMIN), tmp_path)
    second = identities.for_attempt(make_attempt_spec(task_id="b", user_identity=POOL_NONADMIN), tmp_path)
    assert first == second
    assert first.username == f"{user_prefix}pool-nonadmin"
    assert id_of(first, tmp_path, "-G") == str(first.gid)
    assert identities.task_user(make_attempt_spec(user_identity=POOL_NONADMIN)) is None


def test_admin_runs_as_root_where_the_node_has_no_sudo(user_prefix: str, tmp_path: Path) -> None:
    identities = resolver(user_prefix, Accounts(sudo_group=None))
    admin = UserIdentitySpec(auto_user_scope="pool", elevation_level="admin")
    run_as = identities.for_attempt(make_attempt_spec(user_identity=admin), tmp_path)
    assert id_of(run_as, tmp_path, "-u") == "0"
    assert id_of(run_as, tmp_path, "-G") == "0"


def test_admin_joins_sudo_where_the_node_has_it(user_prefix: str, tmp_path: Path) -> None:
    # Given a node with a sudo group (the drop-in goes to a private directory here)
    identities = resolver(user_prefix, Accounts(sudo_group="sudo", sudoers_dir=tmp_path))
    admin = UserIdentitySpec(auto_user_scope="task", elevation_level="admin")
    spec = make_attempt_spec(user_identity=admin)
    # When an admin task identity is resolved
    run_as = identities.for_attempt(spec, tmp_path)
    # Then it runs as its own account, member of sudo, with a NOPASSWD rule
    assert id_of(run_as, tmp_path, "-u") == str(run_as.uid) != "0"
    assert set(id_of(run_as, tmp_path, "-G").split()) == {str(run_as.gid), str(grp.getgrnam("sudo").gr_gid)}
    assert (tmp_path / f"batchyard-{run_as.username}").is_file()
    assert identities.task_user(spec) == run_as.username


def test_named_account_has_its_ids_password_and_ssh_key(
    user_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a pool account with uid, gid, password and ssh key
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key"
    assert process.run_tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)]).ok
    uid, gid = free_id(), free_id(52000)
    account = UserAccountSpec(
        name=f"{user_prefix}ann", password="N0t-in-logs", uid=uid, gid=gid, ssh_private_key=key_file.read_text()
    )
    spec = make_attempt_spec(user_identity=UserIdentitySpec(username=account.name), user_account=account)
    # When an attempt names it
    run_as = resolver(user_prefix).for_attempt(spec, tmp_path)
    # Then the process runs with those ids and the key is in place, private to the account
    assert (id_of(run_as, tmp_path, "-u"), id_of(run_as, tmp_path, "-g")) == (str(uid), str(gid))
    private = Path(run_as.home) / ".ssh" / "id_rsa"
    info = private.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (uid, 0o600)
    assert private.read_text() == key_file.read_text()
    assert (private.parent / "id_rsa.pub").read_text().split()[:2] == key_file.with_suffix(".pub").read_text().split()[
        :2
    ]
    assert "N0t-in-logs" not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_a_username_the_pool_does_not_define_fails_the_attempt(tmp_path: Path) -> None:
    spec = make_attempt_spec(user_identity=UserIdentitySpec(username="ghost"))
    with pytest.raises(IdentityError) as caught:
        IdentityResolver().for_attempt(spec, tmp_path)
    failure = caught.value.failure_info()
    assert (failure.code, failure.category) == ("UserIdentityNotFound", "usererror")
    assert caught.value.outcome == "preprocessing_error"


def test_a_named_account_that_exists_with_another_uid_conflicts(user_prefix: str, tmp_path: Path) -> None:
    uid = free_id()
    resolver(user_prefix).ensure_account(UserAccountSpec(name=f"{user_prefix}bob", uid=uid, gid=uid))
    moved = UserAccountSpec(name=f"{user_prefix}bob", uid=uid + 1, gid=uid + 1)
    with pytest.raises(IdentityError) as caught:
        resolver(user_prefix).ensure_account(moved)
    assert caught.value.code == "UserIdentityConflict"


def test_an_account_removed_meanwhile_is_created_again(user_prefix: str, tmp_path: Path) -> None:
    identities = resolver(user_prefix)
    spec = make_attempt_spec(user_identity=TASK_NONADMIN)
    name = identities.names.task_user(spec.job_id, spec.task_id)
    identities.for_attempt(spec, tmp_path)
    assert identities.remove_task_user(name)
    assert identities.for_attempt(spec, tmp_path).username == name


def test_an_account_deleted_outside_the_agent_is_created_again(user_prefix: str, tmp_path: Path) -> None:
    # Given a pool account this resolver already ensured (and remembers)
    identities = resolver(user_prefix)
    spec = make_attempt_spec(user_identity=POOL_NONADMIN)
    first = identities.for_attempt(spec, tmp_path)
    # When an administrator deletes it behind the agent's back
    subprocess.run(["userdel", first.username], check=True)
    # Then the next attempt recreates it and runs as the account that exists now
    again = identities.for_attempt(spec, tmp_path)
    assert again.username == first.username
    assert id_of(again, tmp_path, "-u") == str(pwd.getpwnam(first.username).pw_uid)


def test_start_task_scope_task_has_a_kept_account_of_its_own(user_prefix: str, tmp_path: Path) -> None:
    identities = resolver(user_prefix)
    run_as = identities.for_start_task(StartTaskSpec(command_line="x", user_identity=TASK_NONADMIN))
    assert run_as.username == f"{user_prefix}start-nonadmin"
    assert id_of(run_as, tmp_path, "-u") == str(run_as.uid)


@pytest.mark.parametrize(
    "identity",
    [TASK_NONADMIN, POOL_NONADMIN, UserIdentitySpec(elevation_level="admin")],
)
def test_without_switching_every_identity_is_the_agent(tmp_path: Path, identity: UserIdentitySpec) -> None:
    identities = IdentityResolver()
    spec = make_attempt_spec(user_identity=identity)
    assert identities.for_attempt(spec, tmp_path) == current_user()
    assert identities.task_user(spec) is None
    assert not identities.switching


def test_without_switching_a_named_account_is_the_agent(tmp_path: Path) -> None:
    account = UserAccountSpec(name="alice", password="p")
    spec = make_attempt_spec(user_identity=UserIdentitySpec(username="alice"), user_account=account)
    assert IdentityResolver().for_attempt(spec, tmp_path) == current_user()


def test_a_root_agent_switches_identities() -> None:
    assert IdentityResolver.for_agent().switching == (os.geteuid() == 0)


def test_task_account_names_fit_linux_limits() -> None:
    name = UserNames("abcdefghijklmnop").task_user("j" * 64, "t" * 64)
    assert len(name) <= 32 and name.startswith("abcdefghijklmnopt-")


def test_identity_label_of_a_named_user() -> None:
    assert identity_label(UserIdentitySpec(username="alice")) == "alice"
