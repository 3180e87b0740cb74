"""OS accounts for task identities: created, checked, changed and removed with the shadow tools.

Every change runs `useradd`, `usermod`, `groupadd`, `userdel` or `chpasswd`
through `process.run_tool` while holding one lock, so two attempts never edit
`/etc/passwd` at once; an agent also holds a host-wide lock (`HOST_LOCK_PATH`,
flock) so that several agents on one host (`batchyard up`) do not race to
create the same pool account. Accounts the agent creates carry `ACCOUNT_MARKER` as
their GECOS comment; an existing account without it (a system or human account
with the same name) is never adopted, changed or removed.

Groups are always set explicitly: the primary group is the account's own
(`--user-group`, or the group with the requested gid, created when missing) and
the supplementary groups are replaced on every ensure: none for a non-admin
account, the sudo group for an admin one when the node has sudo.

Admin elevation: on a node where `sudo` is installed and a `sudo` group exists,
an admin account is a member of that group and gets a sudoers drop-in
(`/etc/sudoers.d/batchyard-<name>`, NOPASSWD for every command), so its
commands run as itself and elevate with `sudo` without a password. Where the
node has no sudo, `IdentityResolver` runs admin auto users as root (uid 0)
instead; see `nodeagent.identity`.

Passwords are fed to chpasswd on stdin and never appear in a log, an error or
an argument list.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import logging
import os
import pwd
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nodeagent import process
from nodeagent.errors import IdentityError
from nodeagent.process import ToolResult

log = logging.getLogger(__name__)

ACCOUNT_MARKER = "batchyard"
"""GECOS comment of every account the agent creates; the only accounts it changes or removes."""

SUDO_GROUP = "sudo"
"""The group whose members may use sudo (Debian and Ubuntu's name)."""

SUDOERS_DIR = Path("/etc/sudoers.d")
"""Where sudo reads drop-in rules from."""

USERDEL_NO_SUCH_USER = 6
"""userdel's exit code when the account does not exist."""

USERDEL_IN_USE = 8
"""userdel's exit code when the account still runs processes."""

ACCOUNT_FILES = (Path("/etc/passwd"), Path("/etc/group"))
"""The account databases: any account change rewrites one of them."""

HOST_LOCK_PATH = Path("/run/batchyard-accounts.lock")
"""Locked (flock) around account changes by every agent of the host; /run is writable by root only."""

ToolRunner = Callable[..., ToolResult]
"""Signature of `process.run_tool`."""


@contextlib.contextmanager
def host_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive flock on `path` for the block; without a path, or one that cannot be opened, just run it."""
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.debug("no host-wide account lock at %s: %s", path, exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class AccountSpec:
    """An OS account the node must have."""

    name: str
    uid: int | None = None
    gid: int | None = None
    admin: bool = False
    home: Path | None = None
    """None: `/home/<name>`, created; a path: used as is and not created (a task user's task directory)."""


def sudo_available() -> bool:
    """True when the node has the sudo program and the sudo group."""
    if shutil.which("sudo", path=process.TOOL_PATH) is None:
        return False
    try:
        grp.getgrnam(SUDO_GROUP)
    except KeyError:
        return False
    return True


def lookup(name: str) -> pwd.struct_passwd | None:
    """The passwd entry of `name`, or None."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def account_files_stamp() -> tuple[int, ...]:
    """Inode, size and modification time of each account database: equal stamps, unchanged accounts."""
    stamp: list[int] = []
    for path in ACCOUNT_FILES:
        try:
            info = path.stat()
        except OSError:
            stamp += [0, 0, 0]
            continue
        stamp += [info.st_ino, info.st_size, info.st_mtime_ns]
    return tuple(stamp)


def is_ours(entry: pwd.struct_passwd) -> bool:
    """True when the account was created by the agent."""
    return entry.pw_gecos.split(",", 1)[0] == ACCOUNT_MARKER


class Accounts:
    """Creates and removes the agent's OS accounts; one instance per node."""

    def __init__(
        self,
        *,
        sudo_group: str | None = None,
        sudoers_dir: Path = SUDOERS_DIR,
        run_tool: ToolRunner = process.run_tool,
        host_lock_path: Path | None = None,
    ) -> None:
        self.sudo_group = sudo_group
        self._sudoers_dir = sudoers_dir
        self._run_tool = run_tool
        self._lock = threading.RLock()
        self._host_lock_path = host_lock_path

    @classmethod
    def detect(cls) -> Accounts:
        """Accounts for this node: admin accounts join the sudo group when the node has sudo; host-wide locking."""
        return cls(sudo_group=SUDO_GROUP if sudo_available() else None, host_lock_path=HOST_LOCK_PATH)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold this instance's lock and the host-wide one."""
        with self._lock, host_lock(self._host_lock_path):
            yield

    def ensure(self, account: AccountSpec) -> pwd.struct_passwd:
        """Create `account` or check the existing one, then set its groups; its passwd entry."""
        with self._locked():
            existing = lookup(account.name)
            if existing is None:
                self._create(account)
            else:
                _check_existing(existing, account)
            self._tool(["usermod", "--groups", ",".join(self._groups(account)), account.name], account.name)
            self._write_sudoers(account)
            entry = lookup(account.name)
        if entry is None:
            raise IdentityError("UserAccountCreationFailed", f"account {account.name} vanished after it was created")
        return entry

    def set_password(self, name: str, password: str) -> None:
        """Set the password of `name` with chpasswd (on stdin); an empty password leaves the account locked."""
        if not password:
            return
        if "\n" in password or "\r" in password:
            raise IdentityError("UserAccountCreationFailed", f"the password of account {name} contains a line break")
        with self._locked():
            result = self._run_tool(["chpasswd"], input=f"{name}:{password}\n".encode())
        if not result.ok:
            output = result.output.replace(password, "***")
            raise IdentityError(
                "UserAccountCreationFailed", f"setting the password of {name} failed: {output}", category="servererror"
            )

    def remove(self, name: str) -> bool:
        """Remove an account the agent created (not its home); True when it is gone."""
        with self._locked():
            entry = lookup(name)
            if entry is None:
                return True
            if not is_ours(entry):
                log.warning("account %s was not created by the agent; not removed", name)
                return False
            self._remove_sudoers(name)
            result = self._run_tool(["userdel", name])
            if result.exit_code == USERDEL_IN_USE:
                killed = process.kill_user_processes(entry.pw_uid)
                log.info("account %s: killed %s leftover processes before removing it", name, killed)
                result = self._run_tool(["userdel", name])
        if result.ok or result.exit_code == USERDEL_NO_SUCH_USER:
            log.info("account %s removed", name)
            return True
        log.warning("account %s: userdel failed (%s): %s", name, result.exit_code, result.output)
        return False

    def _create(self, account: AccountSpec) -> None:
        """useradd the account with its own primary group, uid and home."""
        home = ["--create-home"] if account.home is None else ["--no-create-home", "--home-dir", str(account.home)]
        uid = [] if account.uid is None else ["--uid", str(account.uid)]
        argv = [
            "useradd",
            "--comment",
            ACCOUNT_MARKER,
            "--shell",
            "/bin/bash",
            *home,
            *uid,
            *self._primary_group(account),
            account.name,
        ]
        self._tool(argv, account.name)
        log.info("account %s created (admin: %s)", account.name, account.admin)

    def _primary_group(self, account: AccountSpec) -> list[str]:
        """useradd arguments for the primary group, creating the group with the requested gid when missing."""
        if account.gid is None:
            return ["--user-group"]
        try:
            grp.getgrgid(account.gid)
        except KeyError:
            self._tool(["groupadd", "--gid", str(account.gid), account.name], account.name)
        return ["--gid", str(account.gid)]

    def _groups(self, account: AccountSpec) -> list[str]:
        """The supplementary groups of the account: the sudo group for an admin on a sudo node, else none."""
        return [self.sudo_group] if account.admin and self.sudo_group else []

    def _write_sudoers(self, account: AccountSpec) -> None:
        """Add (admin on a sudo node) or remove the account's NOPASSWD sudoers drop-in."""
        if not (account.admin and self.sudo_group):
            self._remove_sudoers(account.name)
            return
        path = self._sudoers_path(account.name)
        # sudo skips files whose name has a dot, so the temporary file is never read half-written.
        tmp = path.with_name(f"{path.name}.tmp")
        tmp.write_text(f"{account.name} ALL=(ALL:ALL) NOPASSWD: ALL\n")
        os.chmod(tmp, 0o440)
        if shutil.which("visudo", path=process.TOOL_PATH) is not None:
            check = self._run_tool(["visudo", "-c", "-q", "-f", str(tmp)])
            if not check.ok:
                tmp.unlink()
                raise IdentityError(
                    "UserAccountCreationFailed", f"sudoers rule for {account.name} refused", category="servererror"
                )
        os.replace(tmp, path)

    def _remove_sudoers(self, name: str) -> None:
        """Delete the account's sudoers drop-in, if any."""
        self._sudoers_path(name).unlink(missing_ok=True)

    def _sudoers_path(self, name: str) -> Path:
        """`<sudoers dir>/batchyard-<name>`"""
        return self._sudoers_dir / f"batchyard-{name}"

    def _tool(self, argv: Sequence[str], name: str) -> None:
        """Run an account tool; a failure becomes UserAccountCreationFailed (a server error)."""
        result = self._run_tool(argv)
        if not result.ok:
            raise IdentityError(
                "UserAccountCreationFailed",
                f"{argv[0]} for account {name} failed ({result.exit_code}): {result.output}",
                category="servererror",
            )


def _check_existing(entry: pwd.struct_passwd, account: AccountSpec) -> None:
    """Raise UserIdentityConflict unless the existing account is the agent's and has the requested ids."""
    if not is_ours(entry):
        raise IdentityError("UserIdentityConflict", f"an account named {account.name} already exists on the node")
    if account.uid is not None and entry.pw_uid != account.uid:
        raise IdentityError(
            "UserIdentityConflict", f"account {account.name} exists with uid {entry.pw_uid}, not {account.uid}"
        )
    if account.gid is not None and entry.pw_gid != account.gid:
        raise IdentityError(
            "UserIdentityConflict", f"account {account.name} exists with gid {entry.pw_gid}, not {account.gid}"
        )
