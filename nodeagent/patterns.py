"""Expansion of an output file's `filePattern` into the files it names.

Wildcards are `*`, `?`, `[...]` within one path segment and `**` for any
number of directories. Names starting with a dot are skipped unless the
pattern segment itself starts with a dot. Symbolic links to directories are
never descended into by a wildcard, and a symlinked file, or a literal path
through a symlink, is used only when its target lies inside the task directory.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

log = logging.getLogger(__name__)

_WILDCARD = re.compile(r"[*?\[]")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|%(\w+)%")


@dataclass(frozen=True)
class Match:
    """One file a pattern names."""

    path: Path
    """Absolute path of the file."""

    relative: str
    """Path relative to the pattern's directory before its first wildcard, '/'-separated."""


def has_wildcard(pattern: str) -> bool:
    """True when the pattern contains `*`, `?` or `[`."""
    return _WILDCARD.search(pattern) is not None


def expand_variables(pattern: str, env: Mapping[str, str]) -> str:
    """Expand `$VAR`, `${VAR}` and `%VAR%` from `env`; unknown names stay as written."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        return env.get(name, match.group(0))

    return _VARIABLE.sub(replace, pattern)


def match_files(pattern: str, wd: Path, task_dir: Path) -> list[Match]:
    """Regular files named by `pattern` (relative to `wd`, or absolute), sorted by path."""
    full = os.path.normpath(pattern if os.path.isabs(pattern) else os.path.join(wd, pattern))
    segments = full.split(os.sep)
    first = next((i for i, seg in enumerate(segments) if has_wildcard(seg)), None)
    if first is None:
        path = Path(full)
        return [Match(path, path.name)] if _usable_file(path, task_dir) else []
    base = Path(os.sep.join(segments[:first]) or os.sep)
    if not base.is_dir() or (base.is_symlink() and not _inside(base, task_dir)):
        return []
    found = {path: path for path in _walk(base, tuple(segments[first:]), task_dir)}
    return [Match(path, path.relative_to(base).as_posix()) for path in sorted(found)]


def _walk(directory: Path, rest: tuple[str, ...], task_dir: Path) -> Iterator[Path]:
    """Files under `directory` matching the remaining pattern segments."""
    segment, remaining = rest[0], rest[1:]
    if segment == "**":
        yield from _walk_recursive(directory, remaining or ("*",), task_dir)
        return
    if not has_wildcard(segment):
        yield from _step_into(directory / segment, remaining, task_dir)
        return
    for entry in _entries(directory):
        if _visible(entry.name, segment) and fnmatchcase(entry.name, segment):
            yield from _step_into(Path(entry.path), remaining, task_dir)


def _walk_recursive(directory: Path, remaining: tuple[str, ...], task_dir: Path) -> Iterator[Path]:
    """Apply `remaining` in `directory` and in every real (non-symlink, non-dot) subdirectory."""
    yield from _walk(directory, remaining, task_dir)
    for entry in _entries(directory):
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield from _walk_recursive(Path(entry.path), remaining, task_dir)


def _step_into(path: Path, remaining: tuple[str, ...], task_dir: Path) -> Iterator[Path]:
    """Yield `path` when it is the last segment and a usable file, else continue below it."""
    if not remaining:
        if _usable_file(path, task_dir):
            yield path
        return
    if path.is_dir() and (not path.is_symlink() or _inside(path, task_dir)):
        yield from _walk(path, remaining, task_dir)


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """Directory entries, or none when the directory cannot be read."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as exc:
        log.warning("cannot list %s while matching output files: %s", directory, exc)
        return []


def _visible(name: str, segment: str) -> bool:
    """Dot-names match only a segment that itself starts with a dot."""
    return not name.startswith(".") or segment.startswith(".")


def _usable_file(path: Path, task_dir: Path) -> bool:
    """A regular file; through a symlink only when the real file lies inside the task directory."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    if stat.S_ISLNK(mode) or Path(os.path.realpath(path)) != path:
        return _inside(path, task_dir) and path.is_file()
    return stat.S_ISREG(mode)


def _inside(path: Path, task_dir: Path) -> bool:
    """True when `path` with every symlink resolved lies inside the task directory."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(task_dir))
