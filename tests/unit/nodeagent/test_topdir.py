"""The top-directory flag, read back with e2fsprogs' lsattr on ext filesystems."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from nodeagent.layout import NodeLayout
from nodeagent.topdir import mark_top

SHM = Path("/dev/shm")


def lsattr_flags(path: Path) -> str:
    """The flag letters lsattr prints for directory `path`."""
    lsattr = shutil.which("lsattr") or "/usr/bin/lsattr"
    output = subprocess.run([lsattr, "-d", str(path)], check=True, capture_output=True, text=True).stdout
    return output.split()[0]


def filesystem_type(path: Path) -> str:
    """The type coreutils' stat names for the filesystem of `path` (`ext2/ext3` for every ext)."""
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def flagged_dir(tmp_path: Path) -> Path:
    """A directory on an ext filesystem, which has the top-directory flag (skips elsewhere, /tmp on tmpfs)."""
    if not filesystem_type(tmp_path).startswith("ext"):
        pytest.skip("the test directory is not on ext2/3/4")
    return tmp_path


def test_mark_top_sets_the_flag_lsattr_shows(flagged_dir: Path) -> None:
    target = flagged_dir / "workitems"
    target.mkdir()
    assert "T" not in lsattr_flags(target)
    assert mark_top(target) is True
    assert "T" in lsattr_flags(target)


def test_mark_top_keeps_the_other_flags_and_is_idempotent(flagged_dir: Path) -> None:
    target = flagged_dir / "d"
    target.mkdir()
    subprocess.run(["chattr", "+d", str(target)], check=True)
    before = set(lsattr_flags(target)) - {"-"}
    assert "d" in before
    mark_top(target)
    mark_top(target)
    assert set(lsattr_flags(target)) - {"-"} == before | {"T"}


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm")
def test_a_filesystem_without_the_flag_is_left_alone() -> None:
    # tmpfs keeps a few inode flags (immutable, append...) but refuses this one.
    scratch = Path(tempfile.mkdtemp(dir=SHM))
    try:
        before = lsattr_flags(scratch)
        assert mark_top(scratch) is False
        assert lsattr_flags(scratch) == before
    finally:
        shutil.rmtree(scratch)


def test_node_layout_marks_workitems_as_the_top_of_job_trees(flagged_dir: Path) -> None:
    layout = NodeLayout(flagged_dir / "node")
    layout.create()
    assert "T" in lsattr_flags(layout.workitems)
    assert "T" not in lsattr_flags(layout.shared)
