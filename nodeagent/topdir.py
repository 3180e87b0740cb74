"""Mark a directory as the top of unrelated trees, so ext4 spreads its subdirectories across the disk.

ext4's Orlov allocator puts a new subdirectory in or near its parent's block
group, unless the parent is the filesystem root or carries the top-directory
flag (`chattr +T`, `FS_TOPDIR_FL`); then each subdirectory goes to a lightly
used group of its own, like home directories under `/home`. Each job's tree
under `workitems/` is such an unrelated tree.

It matters most on ext4 without a journal: there, allocating an inode skips
every free inode of the group that was deleted in the last minutes, one
inode-table lookup each, so a job's task directories created where many others
were just deleted cost several times their usual CPU. With the flag, a new job
starts in another group.

The flag is a hint: filesystems without it (tmpfs, overlayfs over it) refuse
the ioctl, as does a directory the agent may not change, and nothing else changes.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)

FS_IOC_GETFLAGS = 0x80086601
"""`_IOR('f', 1, long)`: read a file's inode flags (the kernel passes an int)."""

FS_IOC_SETFLAGS = 0x40086602
"""`_IOW('f', 2, long)`: write them."""

FS_TOPDIR_FL = 0x00020000
"""The top-of-directory-hierarchies flag (`T` in lsattr)."""

_UNSUPPORTED = {errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS}
"""What a filesystem without inode flags answers."""


def mark_top(path: Path) -> bool:
    """Set the top-directory flag on directory `path`; False when it could not be set (never raises for that)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # 8 bytes of room: the kernel reads and writes an int in the first 4.
        flags: int = struct.unpack_from("=i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("=iI", flags | FS_TOPDIR_FL, 0))
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            log.info("%s: the top-directory flag cannot be set (%s); its subdirectories stay near it", path, exc)
        return False
    finally:
        os.close(fd)
    return True
