"""Who a task's command runs as.

In this slice every task runs as the agent's own OS user; `resolve` is the seam
where per-task and per-pool auto users and named pool users will be mapped to
real accounts.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from nodeagent.messages import UserIdentitySpec


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


def resolve(spec: UserIdentitySpec) -> RunAs:
    """The OS identity for a task's user identity (the agent's own user in this slice)."""
    return current_user()


def identity_label(spec: UserIdentitySpec) -> str:
    """Value of AZ_BATCH_TASK_USER_IDENTITY: the user name, or PoolNonAdmin/PoolAdmin/TaskNonAdmin/TaskAdmin."""
    if spec.username:
        return spec.username
    scope = "Task" if spec.auto_user_scope == "task" else "Pool"
    elevation = "Admin" if spec.elevation_level == "admin" else "NonAdmin"
    return f"{scope}{elevation}"
