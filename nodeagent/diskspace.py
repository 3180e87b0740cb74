"""Recognising a full disk: the `DiskFull` failure of an attempt whose files could not be written."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from nodeagent.errors import StepError
from nodeagent.messages import AttemptOutcome

log = logging.getLogger(__name__)

DISK_FULL = "DiskFull"
"""Azure's failure code for a node whose disk is full."""

LOW_SPACE_BYTES = 64 * 1024
"""Free space below which a filesystem counts as full (a write of a few blocks would fail)."""


def is_full(path: Path) -> bool:
    """Whether the filesystem holding `path` has less than LOW_SPACE_BYTES left for unprivileged writers."""
    try:
        info = os.statvfs(path)
    except OSError as exc:
        log.debug("cannot statvfs %s: %s", path, exc)
        return False
    return info.f_bavail * info.f_frsize < LOW_SPACE_BYTES


def is_enospc(exc: BaseException | None) -> bool:
    """Whether an exception is (or was caused by) a write that failed for lack of space."""
    current = exc
    for _ in range(8):  # Bounded: exception chains can be cyclic.
        if current is None:
            return False
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full(message: str, outcome: AttemptOutcome) -> StepError:
    """The DiskFull failure of an attempt (a node condition, so a server error)."""
    return StepError(DISK_FULL, message, category="servererror", outcome=outcome)
