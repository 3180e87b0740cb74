from __future__ import annotations

import grp
import logging
import threading
import time
from pathlib import Path

import psutil
import pytest

from nodeagent import process
from nodeagent.errors import IdentityError
from nodeagent.identity import run_as_of
from nodeagent.users import ACCOUNT_MARKER, Accounts, AccountSpec, lookup

from .conftest import free_id
from .identities import run_as_user


def test_creates_the_account_with_its_ids_and_its_own_group(user_prefix: str) -> None:
    # Given uid and gid that nothing uses
    uid, gid = free_id(), free_id(52000)
    # When the account is ensured
    entry = Accounts().ensure(AccountSpec(f"{user_prefix}ann", uid=uid, gid=gid))
    # Then it has them, a group of its own name with the gid, the marker and a home
    assert (entry.pw_uid, entry.pw_gid, entry.pw_gecos) == (uid, gid, ACCOUNT_MARKER)
    assert grp.getgrgid(gid).gr_name == f"{user_prefix}ann"
    assert Path(entry.pw_dir).is_dir() and Path(entry.pw_dir).stat().st_uid == uid


def test_an_existing_group_with_the_gid_is_joined(user_prefix: str) -> None:
    gid = free_id(52000)
    process.run_tool(["groupadd", "--gid", str(gid), f"{user_prefix}shared"])
    entry = Accounts().ensure(AccountSpec(f"{user_prefix}bob", gid=gid))
    assert entry.pw_gid == gid


def test_ensure_is_idempotent(user_prefix: str) -> None:
    accounts = Accounts()
    spec = AccountSpec(f"{user_prefix}cid", uid=free_id())
    first = accounts.ensure(spec)
    assert accounts.ensure(spec).pw_uid == first.pw_uid


def test_another_uid_is_a_conflict(user_prefix: str) -> None:
    accounts = Accounts()
    uid = free_id()
    accounts.ensure(AccountSpec(f"{user_prefix}dan", uid=uid))
    with pytest.raises(IdentityError) as caught:
        accounts.ensure(AccountSpec(f"{user_prefix}dan", uid=uid + 1))
    assert (caught.value.code, caught.value.category) == ("UserIdentityConflict", "usererror")


def test_an_account_the_agent_did_not_create_is_never_adopted(user_prefix: str) -> None:
    # Given an account made by someone else
    assert process.run_tool(["useradd", f"{user_prefix}eve"]).ok
    # Then the agent neither uses nor removes it
    with pytest.raises(IdentityError) as caught:
        Accounts().ensure(AccountSpec(f"{user_prefix}eve"))
    assert caught.value.code == "UserIdentityConflict"
    assert not Accounts().remove(f"{user_prefix}eve")
    assert lookup(f"{user_prefix}eve") is not None


def test_non_admin_supplementary_groups_are_reset(user_prefix: str) -> None:
    # Given an agent account someone added to a group
    accounts = Accounts()
    name = f"{user_prefix}fay"
    accounts.ensure(AccountSpec(name))
    assert process.run_tool(["usermod", "--append", "--groups", "users", name]).ok
    # When it is ensured again as non-admin
    entry = accounts.ensure(AccountSpec(name))
    # Then it has no supplementary group
    assert run_as_of(entry).groups == ()


def test_admin_joins_the_sudo_group_with_a_nopasswd_rule(user_prefix: str, tmp_path: Path) -> None:
    accounts = Accounts(sudo_group="sudo", sudoers_dir=tmp_path)
    name = f"{user_prefix}gus"
    entry = accounts.ensure(AccountSpec(name, admin=True))
    assert run_as_of(entry).groups == (grp.getgrnam("sudo").gr_gid,)
    rule = tmp_path / f"batchyard-{name}"
    assert rule.read_text() == f"{name} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    assert rule.stat().st_mode & 0o777 == 0o440
    # When the account is demoted, the group and the rule go
    entry = accounts.ensure(AccountSpec(name))
    assert run_as_of(entry).groups == () and not rule.exists()


def test_password_is_set_and_never_logged(user_prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    accounts = Accounts()
    name = f"{user_prefix}hal"
    accounts.ensure(AccountSpec(name))
    accounts.set_password(name, "Pa55:word with spaces")
    shadow = {line.split(":")[0]: line.split(":")[1] for line in Path("/etc/shadow").read_text().splitlines()}
    assert shadow[name].startswith("$")
    assert "Pa55" not in caplog.text


def test_a_failed_password_change_does_not_reveal_it(user_prefix: str) -> None:
    with pytest.raises(IdentityError) as caught:
        Accounts().set_password(f"{user_prefix}nobody", "Hidden-Pass-1")
    assert "Hidden-Pass-1" not in caught.value.message


def test_a_password_with_a_line_break_is_refused(user_prefix: str) -> None:
    with pytest.raises(IdentityError):
        Accounts().set_password(f"{user_prefix}ivy", "one\nroot:two")


def test_remove_deletes_the_account_and_its_group(user_prefix: str) -> None:
    accounts = Accounts()
    name = f"{user_prefix}jon"
    accounts.ensure(AccountSpec(name, home=Path("/nonexistent")))
    assert accounts.remove(name)
    assert lookup(name) is None
    with pytest.raises(KeyError):
        grp.getgrnam(name)
    assert accounts.remove(name)


def test_remove_stops_processes_the_account_left_running(user_prefix: str, tmp_path: Path) -> None:
    # Given a process still running as the account
    accounts = Accounts()
    name = f"{user_prefix}kim"
    run_as = run_as_of(accounts.ensure(AccountSpec(name, home=tmp_path)))
    worker = threading.Thread(target=run_as_user, args=(run_as, tmp_path, "/bin/sleep", "60"))
    worker.start()
    deadline = time.monotonic() + 5
    while not _runs_as(run_as.uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # When the account is removed
    assert accounts.remove(name)
    # Then the process is gone with it
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert lookup(name) is None


def _runs_as(uid: int) -> bool:
    return any(proc.info["uids"] and proc.info["uids"].real == uid for proc in psutil.process_iter(["uids"]))


def test_lookup_of_a_missing_account_is_none() -> None:
    assert lookup("no-such-account-here") is None
