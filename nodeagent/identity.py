"""Who a task's command runs as: Azure's userIdentity mapped to a real OS account.

| identity | OS account |
|---|---|
| autoUser, scope `task` | `<prefix>t-<hash of job and task id>`, home = its task dir; removed with that dir |
| autoUser, scope `pool` | `<prefix>pool-nonadmin` or `<prefix>pool-admin`, created once per node and kept |
| start task, scope `task` | `<prefix>start-nonadmin` or `<prefix>start-admin`, kept (the start task reruns) |
| `username` | the pool's account of that name: uid/gid, password, ssh key (else `UserIdentityNotFound`) |

The default prefix is `by` (`byt-1a2b3c4d5e6f`, `bypool-nonadmin`). Non-admin
accounts have their own primary group and no supplementary group.

Elevation `admin`: where the node has `sudo` (the program and the `sudo`
group), an admin account is a member of `sudo` with a NOPASSWD sudoers drop-in:
it runs as itself and elevates with `sudo`. Where the node has no sudo, admin
auto users run as root (uid 0, gid 0, no supplementary group); a named admin
account still runs as itself, with the uid/gid the pool asked for, and cannot
elevate (a warning is logged once per account).

An agent that is not root cannot switch users: every identity resolves to the
agent's own user (logged once at start). A `username` the pool does not define
still fails the attempt.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pwd
import threading
from dataclasses import dataclass
from pathlib import Path

from nodeagent import process
from nodeagent.errors import IdentityError
from nodeagent.messages import AttemptSpec, StartTaskSpec, UserAccountSpec, UserIdentitySpec
from nodeagent.ownership import fresh_file, own_dir
from nodeagent.users import Accounts, AccountSpec, account_files_stamp, lookup

log = logging.getLogger(__name__)

NOBODY_UID = 65534
"""uid and gid of `nobody` when the node has no such entry."""


@dataclass(frozen=True)
class RunAs:
    """An OS identity a process runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    username: str


def current_user() -> RunAs:
    """The identity of the agent process itself."""
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        username, home = entry.pw_name, entry.pw_dir
    except KeyError:
        # Containers often run with a uid that has no passwd entry.
        username, home = str(uid), "/"
    return RunAs(uid=uid, gid=os.getgid(), groups=tuple(os.getgroups()), home=home, username=username)


def run_as_of(entry: pwd.struct_passwd) -> RunAs:
    """The identity of an account: its uid, primary gid and its supplementary groups (the primary excluded)."""
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)) - {entry.pw_gid}))
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, groups=groups, home=entry.pw_dir, username=entry.pw_name)


def root() -> RunAs:
    """uid 0 with gid 0 and no supplementary group: admin where the node has no sudo."""
    return RunAs(uid=0, gid=0, groups=(), home="/root", username="root")


def unprivileged() -> RunAs:
    """The identity an attempt holds before its own is resolved: `nobody` for a root agent, else the agent's."""
    if os.geteuid() != 0:
        return current_user()
    return _nobody()


@functools.cache
def _nobody() -> RunAs:
    """The `nobody` account (looked up once: the system account does not change while the agent runs)."""
    entry = lookup("nobody")
    if entry is None:
        return RunAs(uid=NOBODY_UID, gid=NOBODY_UID, groups=(), home="/nonexistent", username="nobody")
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, groups=(), home=entry.pw_dir, username=entry.pw_name)


def identity_label(spec: UserIdentitySpec) -> str:
    """Value of AZ_BATCH_TASK_USER_IDENTITY: the user name, or PoolNonAdmin/PoolAdmin/TaskNonAdmin/TaskAdmin."""
    if spec.username:
        return spec.username
    scope = "Task" if spec.auto_user_scope == "task" else "Pool"
    elevation = "Admin" if spec.elevation_level == "admin" else "NonAdmin"
    return f"{scope}{elevation}"


@dataclass(frozen=True)
class Applied:
    """An account as this agent last ensured it."""

    fingerprint: str
    """The settings it was ensured with."""
    run_as: RunAs
    stamp: tuple[int, ...]
    """The account files' stamp when `run_as` was read from them."""


@dataclass(frozen=True)
class UserNames:
    """Names of the auto-user accounts; the prefix keeps nodes, agents and test runs apart."""

    prefix: str = "by"

    def task_user(self, job_id: str, task_id: str) -> str:
        """`<prefix>t-<12 hex digits>`: the account of one task (at most 32 characters for a prefix of 16)."""
        digest = hashlib.sha256(f"{job_id}\n{task_id}".encode()).hexdigest()[:12]
        return f"{self.prefix}t-{digest}"

    def pool_user(self, elevation: str) -> str:
        """`<prefix>pool-nonadmin` or `<prefix>pool-admin`."""
        return f"{self.prefix}pool-{elevation}"

    def start_user(self, elevation: str) -> str:
        """`<prefix>start-nonadmin` or `<prefix>start-admin`: the start task's task-scope account."""
        return f"{self.prefix}start-{elevation}"


class IdentityResolver:
    """Maps user identities to OS accounts, creating them on first use; without `accounts` nothing is switched."""

    def __init__(self, accounts: Accounts | None = None, names: UserNames | None = None) -> None:
        self.accounts = accounts
        self.names = names or UserNames()
        self._lock = threading.Lock()
        self._applied: dict[str, Applied] = {}
        self._warned: set[str] = set()

    @classmethod
    def for_agent(cls, prefix: str = "by") -> IdentityResolver:
        """The resolver of a running agent: switching identities when it is root, else none."""
        names = UserNames(prefix)
        if os.geteuid() != 0:
            log.warning(
                "agent is not root (uid %s): tasks run as the agent's own user, identities are not switched",
                os.geteuid(),
            )
            return cls(None, names)
        accounts = Accounts.detect()
        admin = "join group sudo" if accounts.sudo_group else "run as root (no sudo on this node)"
        log.info("task identities are OS accounts prefixed %s; admin auto users %s", prefix, admin)
        return cls(accounts, names)

    @property
    def switching(self) -> bool:
        """True when tasks run as their own OS accounts."""
        return self.accounts is not None

    def for_attempt(self, spec: AttemptSpec, task_dir: Path) -> RunAs:
        """The identity of an attempt, its account created when missing."""
        identity = spec.user_identity
        admin = identity.elevation_level == "admin"
        if identity.auto_user_scope == "task":
            auto = AccountSpec(self.names.task_user(spec.job_id, spec.task_id), admin=admin, home=task_dir)
        else:
            auto = AccountSpec(self.names.pool_user(identity.elevation_level), admin=admin)
        return self._resolve(identity, spec.user_account, auto)

    def for_start_task(self, spec: StartTaskSpec) -> RunAs:
        """The identity of the pool's start task, its account created when missing."""
        identity = spec.user_identity
        admin = identity.elevation_level == "admin"
        if identity.auto_user_scope == "task":
            auto = AccountSpec(self.names.start_user(identity.elevation_level), admin=admin)
        else:
            auto = AccountSpec(self.names.pool_user(identity.elevation_level), admin=admin)
        return self._resolve(identity, spec.user_account, auto)

    def task_user(self, spec: AttemptSpec) -> str | None:
        """The per-task account an attempt runs as, removed with its task directory; None when there is none."""
        identity = spec.user_identity
        if self.accounts is None or identity.username or identity.auto_user_scope != "task":
            return None
        if identity.elevation_level == "admin" and not self.accounts.sudo_group:
            return None
        return self.names.task_user(spec.job_id, spec.task_id)

    def remove_task_user(self, name: str) -> bool:
        """Remove a per-task account; True when it is gone (or identities are not switched)."""
        if self.accounts is None:
            return True
        with self._lock:
            self._applied.pop(name, None)
            return self.accounts.remove(name)

    def ensure_account(self, account: UserAccountSpec) -> RunAs:
        """Create or update a pool's named account (ids, groups, password, ssh key); its identity."""
        if self.accounts is None:
            return current_user()
        spec = AccountSpec(account.name, uid=account.uid, gid=account.gid, admin=account.elevation_level == "admin")
        if spec.admin and not self.accounts.sudo_group and account.name not in self._warned:
            self._warned.add(account.name)
            log.warning("account %s is admin but the node has no sudo: it runs as itself, unelevated", account.name)
        # The fingerprint covers the password, so it stays in memory and is hashed.
        fingerprint = hashlib.sha256(account.model_dump_json().encode()).hexdigest()
        return self._ensure(spec, fingerprint, account)

    def _resolve(self, identity: UserIdentitySpec, account: UserAccountSpec | None, auto: AccountSpec) -> RunAs:
        """A named identity's account, or the auto-user account `auto`."""
        if identity.username:
            if account is None or account.name != identity.username:
                raise IdentityError(
                    "UserIdentityNotFound", f"the pool defines no user account named {identity.username}"
                )
            return self.ensure_account(account)
        if self.accounts is None:
            return current_user()
        if auto.admin and not self.accounts.sudo_group:
            return root()
        return self._ensure(auto, repr(auto), None)

    def _ensure(self, spec: AccountSpec, fingerprint: str, named: UserAccountSpec | None) -> RunAs:
        """Ensure the account unless this agent already did with the same settings and it still exists.

        While the account files are unchanged since, the identity read then is still the account's.
        """
        assert self.accounts is not None
        with self._lock:
            stamp = account_files_stamp()
            applied = self._applied.get(spec.name)
            if applied is not None and applied.fingerprint == fingerprint:
                if applied.stamp == stamp:
                    return applied.run_as
                entry = lookup(spec.name)
                if entry is not None:
                    return self._remember(spec.name, fingerprint, run_as_of(entry), stamp)
            entry = self.accounts.ensure(spec)
            if named is not None:
                self.accounts.set_password(named.name, named.password)
                if named.ssh_private_key:
                    install_ssh_key(entry, named.ssh_private_key)
            return self._remember(spec.name, fingerprint, run_as_of(entry), account_files_stamp())

    def _remember(self, name: str, fingerprint: str, run_as: RunAs, stamp: tuple[int, ...]) -> RunAs:
        self._applied[name] = Applied(fingerprint, run_as, stamp)
        return run_as


def install_ssh_key(entry: pwd.struct_passwd, private_key: str) -> None:
    """Write `~/.ssh/id_rsa` (0600) and, when ssh-keygen derives it, `~/.ssh/id_rsa.pub`, owned by the account."""
    home = Path(entry.pw_dir)
    if not home.is_dir():
        log.warning("account %s has no home directory; its ssh key is not installed", entry.pw_name)
        return
    run_as = run_as_of(entry)
    ssh_dir = home / ".ssh"
    key = private_key if private_key.endswith("\n") else private_key + "\n"
    own_dir(ssh_dir, run_as, 0o700)
    fresh_file(ssh_dir / "id_rsa", run_as, 0o600, key.encode())
    public = process.run_tool(["ssh-keygen", "-y", "-P", "", "-f", str(ssh_dir / "id_rsa")])
    if public.ok and public.output.startswith(("ssh-", "ecdsa-")):
        fresh_file(ssh_dir / "id_rsa.pub", run_as, 0o644, (public.output + "\n").encode())
    else:
        log.info("account %s: no public key derived from its ssh private key", entry.pw_name)
