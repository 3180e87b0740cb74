"""Directories and files handed to a task's OS user, without ever following a symbolic link.

The agent runs as root and works in directories a task user owns: a task (or an
earlier attempt of it) may have replaced `wd`, `stdout.txt` or `.ssh` with a
link to `/etc`. Every helper here opens with O_NOFOLLOW, replaces links instead
of going through them, and changes ownership and mode on the open descriptor.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nodeagent.identity import RunAs


DirOrigin = Literal["made", "kept", "taken"]
"""What `own_dir` found: no directory (it made one), one `run_as` owned, or one another user owned."""


def own_dir(path: Path, run_as: RunAs, mode: int) -> DirOrigin:
    """Create directory `path` if needed (a link in its place is removed) and give it to `run_as` with `mode`."""
    origin: DirOrigin = "made"
    try:
        path.mkdir(mode)
    except FileExistsError:
        if not path.is_symlink():
            origin = "kept"
        else:
            path.unlink()
            path.mkdir(mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if not _fown(fd, run_as, mode) and origin == "kept":
            origin = "taken"
    finally:
        os.close(fd)
    return origin


def fresh_file(path: Path, run_as: RunAs, mode: int, data: bytes = b"") -> None:
    """Replace `path` with a new file holding `data`, owned by `run_as`, with `mode`."""
    try:
        fd = _create(path, mode)
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = _create(path, mode)
    try:
        _fown(fd, run_as, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def hand_over(paths: Iterable[Path], base: Path, run_as: RunAs) -> None:
    """Give each path, and every directory between it and `base`, to `run_as` (links themselves, not targets)."""
    done: set[Path] = set()
    for path in paths:
        current = path
        while current != base and current.is_relative_to(base) and current not in done:
            _lchown(current, run_as)
            done.add(current)
            current = current.parent


def give_tree(root: Path, run_as: RunAs) -> None:
    """Give `root` and everything below it to `run_as`, never following links (fd-relative, so races cannot)."""
    _lchown(root, run_as)
    for _, subdirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in (*subdirs, *files):
            with contextlib.suppress(FileNotFoundError):
                os.chown(name, run_as.uid, run_as.gid, dir_fd=dir_fd, follow_symlinks=False)


def _create(path: Path, mode: int) -> int:
    """A descriptor of a file created now at `path` (never through a link)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def _fown(fd: int, run_as: RunAs, mode: int) -> bool:
    """Give an open file to `run_as` with `mode`, changing only what differs; True when its user was `run_as` already.

    chown comes first: it may clear set-user-ID and set-group-ID bits, which `mode` then sets again.
    """
    info = os.fstat(fd)
    owned = (info.st_uid, info.st_gid) == (run_as.uid, run_as.gid)
    if not owned:
        os.fchown(fd, run_as.uid, run_as.gid)
    cleared = not owned and mode & (stat.S_ISUID | stat.S_ISGID)
    if cleared or stat.S_IMODE(info.st_mode) != mode:
        os.fchmod(fd, mode)
    return info.st_uid == run_as.uid


def _lchown(path: Path, run_as: RunAs) -> None:
    """chown `path` itself to `run_as` unless it already belongs to it; a vanished path is skipped."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if (info.st_uid, info.st_gid) != (run_as.uid, run_as.gid):
        os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
