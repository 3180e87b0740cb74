"""Per-attempt control groups: detection at agent start, entering before exec, usage, kill and removal.

The agent picks, once at start, the first usable of:

* cgroup v2 with the cpu, memory and io controllers: attempts live in
  `/sys/fs/cgroup/batchyard/<node>/<attempt>`, the controllers enabled in each
  parent's `cgroup.subtree_control`;
* cgroup v1 with cpuacct, memory, blkio and pids mounted under
  `/sys/fs/cgroup/<controller>`: attempts live in
  `/sys/fs/cgroup/<controller>/batchyard/<node>/<attempt>`, one directory per controller;
* none: usage comes from the reaped child's rusage and from sampling the process tree.

`<node>` is the node id plus a digest of the agent's root directory (`node_group_name`): node ids
are unique per host in a cluster, but local stacks on one host (`batchyard up` on two data
directories, concurrent test runs) all have a `local-1`, and one agent's start-up sweep of stale
cgroups must never kill another agent's attempts.

An attempt's command is forked straight into its cgroup by the agent's launcher
(`nodeagent.launcherd`), which moves itself into the attempt's cgroups around the
fork and then back to its own: the cgroups the agent was started in, found at
detection (`CgroupSupport.home`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import psutil

from nodeagent.layout import check_name

log = logging.getLogger(__name__)

CgroupMode = Literal["auto", "v2", "v1", "off"]
"""The `cgroups` setting: detect, force one version, or never use cgroups."""

CgroupVersion = Literal["v1", "v2"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the cgroup filesystems are mounted."""

GROUP_NAME = "batchyard"
"""Name of the cgroup under which every node keeps its attempts."""

V1_CONTROLLERS = ("cpuacct", "memory", "blkio", "pids")
"""The v1 hierarchies an attempt joins, in this order."""

V2_CONTROLLERS = ("cpu", "memory", "io")
"""The v2 controllers that must be available; `pids` is enabled too when present."""

EMPTY_TIMEOUT_SECONDS = 5.0
"""How long the cgroup backstop waits for killed processes to leave before giving up."""

READ_SIZE = 65536
"""Bytes asked for by each read of a cgroup file."""

SAMPLE_SECONDS = 0.1
"""How often the fallback sampler reads the process tree's memory and IO."""


@dataclass(frozen=True)
class CgroupSupport:
    """What the node detected at start: the version in use and the node's cgroup directories."""

    version: CgroupVersion | None = None
    node_dirs: tuple[Path, ...] = ()
    """v2: `(<root>/batchyard/<node>,)`; v1: one per V1_CONTROLLERS entry."""
    home: tuple[Path, ...] = ()
    """The agent's own cgroup in the hierarchy of each of `node_dirs`."""

    @property
    def enabled(self) -> bool:
        """Whether attempts get a cgroup."""
        return self.version is not None


NO_CGROUPS = CgroupSupport()
"""Support value of a node without usable cgroups."""


@dataclass(frozen=True)
class ResourceUsage:
    """What an attempt used, as far as it could be measured; None where it could not."""

    user_cpu_seconds: float | None = None
    kernel_cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_ops: int | None = None
    write_ops: int | None = None

    def merged(self, fallback: ResourceUsage) -> ResourceUsage:
        """This usage with each missing value taken from `fallback`."""
        return ResourceUsage(
            user_cpu_seconds=_first(self.user_cpu_seconds, fallback.user_cpu_seconds),
            kernel_cpu_seconds=_first(self.kernel_cpu_seconds, fallback.kernel_cpu_seconds),
            peak_memory_bytes=_first(self.peak_memory_bytes, fallback.peak_memory_bytes),
            read_bytes=_first(self.read_bytes, fallback.read_bytes),
            write_bytes=_first(self.write_bytes, fallback.write_bytes),
            read_ops=_first(self.read_ops, fallback.read_ops),
            write_ops=_first(self.write_ops, fallback.write_ops),
        )


_T = TypeVar("_T")


def _first(value: _T | None, fallback: _T | None) -> _T | None:
    """`value` unless it is None."""
    return fallback if value is None else value


def node_group_name(node_id: str, node_root: Path) -> str:
    """The cgroup name of one agent: its node id and a digest of its root directory (stable across restarts)."""
    return f"{node_id}-{hashlib.sha256(str(node_root).encode()).hexdigest()[:8]}"


def detect(mode: CgroupMode, node_id: str, root: Path = CGROUP_ROOT) -> CgroupSupport:
    """The cgroup support to use on this node for setting `mode`; NO_CGROUPS when none is usable."""
    node = check_name(node_id)
    support = NO_CGROUPS
    if mode in ("auto", "v2"):
        support = _try_v2(root, node)
    if not support.enabled and mode in ("auto", "v1"):
        support = _try_v1(root, node)
    if support.enabled:
        log.info("node %s: attempts run in cgroup %s under %s", node_id, support.version, support.node_dirs[0])
    elif mode != "off":
        log.warning("node %s: no usable cgroups (setting %s); using process usage instead", node_id, mode)
    return support


def _try_v2(root: Path, node: str) -> CgroupSupport:
    """v2 support when the unified hierarchy offers the controllers and the subtree can be delegated."""
    try:
        available = set((root / "cgroup.controllers").read_text().split())
    except OSError:
        return NO_CGROUPS
    if not set(V2_CONTROLLERS) <= available:
        return NO_CGROUPS
    wanted = [*V2_CONTROLLERS, *(["pids"] if "pids" in available else [])]
    node_dir = root / GROUP_NAME / node
    home = _home(root, own_cgroups().get(""))
    if home is None:
        log.info("cgroup v2 under %s is not usable: the agent's own cgroup is not there", root)
        return NO_CGROUPS
    try:
        for directory in (root, root / GROUP_NAME, node_dir):
            directory.mkdir(exist_ok=True)
            _enable_controllers(directory, wanted)
    except OSError as exc:
        log.info("cgroup v2 under %s is not usable: %s", root, exc)
        return NO_CGROUPS
    return CgroupSupport("v2", (node_dir,), (home,))


def own_cgroups(proc_file: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """This process's cgroup path per controller; the cgroup v2 path under the key ""."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in proc_file.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _home(mount: Path, path: str | None) -> Path | None:
    """The directory of cgroup `path` in the hierarchy mounted at `mount`; None when it is not there."""
    if path is None:
        return None
    directory = mount / path.lstrip("/")
    return directory if (directory / "cgroup.procs").is_file() else None


def _enable_controllers(directory: Path, controllers: Iterable[str]) -> None:
    """Enable `controllers` for the children of a v2 cgroup."""
    enabled = set((directory / "cgroup.subtree_control").read_text().split())
    for name in controllers:
        if name not in enabled:
            (directory / "cgroup.subtree_control").write_text(f"+{name}")


def _try_v1(root: Path, node: str) -> CgroupSupport:
    """v1 support when every controller in V1_CONTROLLERS is mounted and writable."""
    dirs = tuple(root / name / GROUP_NAME / node for name in V1_CONTROLLERS)
    own = own_cgroups()
    homes = [_home(root / name, own.get(name)) for name in V1_CONTROLLERS]
    home = tuple(directory for directory in homes if directory is not None)
    if len(home) != len(V1_CONTROLLERS):
        log.info("cgroup v1 under %s is not usable: the agent's own cgroups are not all there", root)
        return NO_CGROUPS
    try:
        for controller, directory in zip(V1_CONTROLLERS, dirs, strict=True):
            if not (root / controller / "cgroup.procs").is_file():
                return NO_CGROUPS
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("cgroup v1 under %s is not usable: %s", root, exc)
        return NO_CGROUPS
    return CgroupSupport("v1", dirs, home)


@dataclass(frozen=True)
class AttemptCgroup:
    """The cgroup (one directory per hierarchy) of one attempt."""

    version: CgroupVersion
    dirs: tuple[Path, ...]
    home: tuple[Path, ...] = ()
    """The cgroup of the process that starts the command, in the hierarchy of each of `dirs`."""

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """The `cgroup.procs` file of each directory."""
        return tuple(directory / "cgroup.procs" for directory in self.dirs)

    @property
    def moves(self) -> list[tuple[Path, Path]]:
        """Per hierarchy, the `cgroup.procs` to start the command in and the one its starter returns to."""
        pairs = zip(self.dirs, self.home, strict=True)
        return [(directory / "cgroup.procs", home / "cgroup.procs") for directory, home in pairs]

    def enter(self, pid: int) -> None:
        """Move process `pid` into this cgroup."""
        for path in self.procs_files:
            path.write_text(str(pid))

    def pids(self) -> set[int]:
        """Every process in the cgroup now.

        One hierarchy tells: a command starts in all of the attempt's at once and its descendants inherit
        them, so each holds the same processes (a straggler elsewhere would keep `remove` from succeeding).
        """
        with contextlib.suppress(FileNotFoundError):
            return {int(line) for line in _read_all(self.dirs[0] / "cgroup.procs").split()}
        return set()

    def kill(self, timeout: float = EMPTY_TIMEOUT_SECONDS) -> bool:
        """SIGKILL everything in the cgroup until it is empty; True when it emptied within `timeout`."""
        kill_file = self.dirs[0] / "cgroup.kill"
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() >= deadline:
                log.warning("cgroup %s: processes %s survived SIGKILL", self.dirs[0], sorted(pids))
                return False
            if self.version == "v2" and kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:
                _kill_all(pids)
            time.sleep(0.01)

    def remove(self, timeout: float = EMPTY_TIMEOUT_SECONDS) -> bool:
        """Remove every directory of the cgroup; True when all are gone."""
        deadline = time.monotonic() + timeout
        left = list(self.dirs)
        while left:
            left = [directory for directory in left if not _rmdir(directory)]
            if left and time.monotonic() >= deadline:
                log.warning("cgroup %s: could not be removed", left[0])
                return False
            if left:
                time.sleep(0.01)
        return True

    def usage(self) -> ResourceUsage:
        """CPU, peak memory and IO of everything that ran in the cgroup."""
        if self.version == "v2":
            return _v2_usage(self.dirs[0])
        return _v1_usage(*self.dirs[:3])


def _kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each pid; one that is already gone is fine."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _rmdir(directory: Path) -> bool:
    """rmdir a cgroup; True when it is gone, False while it is busy."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return False
        raise
    return True


def create(support: CgroupSupport, attempt_id: str) -> AttemptCgroup | None:
    """A fresh cgroup for an attempt; None when the node has no cgroups."""
    if support.version is None:
        return None
    name = check_name(attempt_id)
    cgroup = AttemptCgroup(support.version, tuple(directory / name for directory in support.node_dirs), support.home)
    try:
        for directory in cgroup.dirs:
            _make_fresh(cgroup.version, directory)
        return cgroup
    except OSError as exc:
        log.warning("attempt %s: cannot create its cgroup, running without one: %s", attempt_id, exc)
        release(cgroup)
        return None


def _make_fresh(version: CgroupVersion, directory: Path) -> None:
    """mkdir one hierarchy's cgroup; one an earlier run of the same attempt left is emptied and made again."""
    try:
        directory.mkdir()
    except FileExistsError:
        # Left by an earlier run of the same attempt: whatever still runs there is stale.
        AttemptCgroup(version, (directory,)).kill()
        _rmdir(directory)
        directory.mkdir()


def release(cgroup: AttemptCgroup, *, emptied: bool = False) -> None:
    """Kill what is left in the cgroup (unless the caller just `emptied` it) and remove it (never raises).

    An emptied cgroup stays empty: a process joins one only by being moved in or forked by a member.
    """
    try:
        if not emptied:
            cgroup.kill()
        cgroup.remove()
    except OSError as exc:
        log.warning("cgroup %s: cleanup failed: %s", cgroup.dirs[0], exc)


def sweep(support: CgroupSupport) -> list[str]:
    """Kill and remove every attempt cgroup left under the node (at agent start); the names removed."""
    if support.version is None:
        return []
    bases = [base for base in support.node_dirs if base.is_dir()]
    names = sorted({child.name for base in bases for child in base.iterdir() if child.is_dir()})
    for name in names:
        release(AttemptCgroup(support.version, tuple(base / name for base in support.node_dirs)))
    return names


def remove_node(support: CgroupSupport) -> None:
    """Sweep the node's attempts, remove the node's cgroup directories, and their parent once no node uses it."""
    sweep(support)
    for directory in support.node_dirs:
        for path in (directory, directory.parent):
            with contextlib.suppress(OSError):
                path.rmdir()


def _read_keyed(path: Path) -> dict[str, int]:
    """A flat `key value` file (cpu.stat, cpuacct.stat) as a dict; empty when missing."""
    values: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in _read_all(path).splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
    return values


def _read_int(path: Path) -> int | None:
    """A single-number file, or None when it is missing or holds something else."""
    try:
        text = _read_all(path).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _v2_usage(directory: Path) -> ResourceUsage:
    """Usage from a v2 cgroup's cpu.stat, memory.peak and io.stat."""
    cpu = _read_keyed(directory / "cpu.stat")
    io = parse_io_stat(_read_text(directory / "io.stat"))
    return ResourceUsage(
        user_cpu_seconds=cpu["user_usec"] / 1e6 if "user_usec" in cpu else None,
        kernel_cpu_seconds=cpu["system_usec"] / 1e6 if "system_usec" in cpu else None,
        peak_memory_bytes=_read_int(directory / "memory.peak"),
        read_bytes=io["rbytes"],
        write_bytes=io["wbytes"],
        read_ops=io["rios"],
        write_ops=io["wios"],
    )


def _v1_usage(cpuacct: Path, memory: Path, blkio: Path) -> ResourceUsage:
    """Usage from v1 cpuacct, memory and blkio cgroups."""
    user, kernel = _v1_cpu(cpuacct)
    data = parse_blkio(_read_text(blkio / "blkio.throttle.io_service_bytes"))
    ops = parse_blkio(_read_text(blkio / "blkio.throttle.io_serviced"))
    return ResourceUsage(
        user_cpu_seconds=user,
        kernel_cpu_seconds=kernel,
        peak_memory_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
        read_bytes=data["Read"],
        write_bytes=data["Write"],
        read_ops=ops["Read"],
        write_ops=ops["Write"],
    )


def _v1_cpu(cpuacct: Path) -> tuple[float | None, float | None]:
    """User and kernel seconds: nanoseconds from cpuacct.usage_user/_sys, else ticks from cpuacct.stat."""
    user_ns = _read_int(cpuacct / "cpuacct.usage_user")
    system_ns = _read_int(cpuacct / "cpuacct.usage_sys")
    if user_ns is not None and system_ns is not None:
        return user_ns / 1e9, system_ns / 1e9
    ticks = _read_keyed(cpuacct / "cpuacct.stat")
    hertz = os.sysconf("SC_CLK_TCK")
    if "user" not in ticks or "system" not in ticks:
        return None, None
    return ticks["user"] / hertz, ticks["system"] / hertz


def _read_text(path: Path) -> str:
    """A file's text, empty when it cannot be read."""
    try:
        return _read_all(path)
    except OSError:
        return ""


def _read_all(path: Path) -> str:
    """The whole text of a small (pseudo-)file, read with plain system calls: no buffered text layer.

    A read shorter than asked for ends the file: cgroup files are seq_files, whose reads fill the
    buffer unless the text runs out, so the usual small file takes one read and no second one for EOF.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, READ_SIZE):
            chunks.append(chunk)
            if len(chunk) < READ_SIZE:
                break
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def parse_io_stat(text: str) -> dict[str, int]:
    """Sum rbytes/wbytes/rios/wios over the devices of a v2 io.stat."""
    totals = dict.fromkeys(("rbytes", "wbytes", "rios", "wios"), 0)
    for line in text.splitlines():
        for pair in line.split()[1:]:
            key, _, value = pair.partition("=")
            if key in totals and value.isdigit():
                totals[key] += int(value)
    return totals


def parse_blkio(text: str) -> dict[str, int]:
    """Sum the Read and Write lines over the devices of a v1 blkio.throttle file."""
    totals = {"Read": 0, "Write": 0}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in totals and parts[2].isdigit():
            totals[parts[1]] += int(parts[2])
    return totals


@dataclass
class TreeSampler:
    """Samples a process tree's resident memory and IO counters from a thread (the fallback without cgroups)."""

    interval: float = SAMPLE_SECONDS
    peak_rss: int = 0
    _io: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, pid: int) -> None:
        """Start sampling the tree rooted at `pid`."""
        self._thread = threading.Thread(target=self._loop, args=(pid,), name=f"sampler-{pid}", daemon=True)
        self._thread.start()

    def stop(self) -> ResourceUsage:
        """Stop sampling; the peak memory and the IO seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        sums = [sum(values[i] for values in self._io.values()) for i in range(4)]
        return ResourceUsage(
            peak_memory_bytes=self.peak_rss or None,
            read_bytes=sums[0],
            write_bytes=sums[1],
            read_ops=sums[2],
            write_ops=sums[3],
        )

    def _loop(self, pid: int) -> None:
        """Sample until stopped or the root process is gone."""
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            self._sample(tree)
            self._stop.wait(self.interval)

    def _sample(self, tree: list[psutil.Process]) -> None:
        """Add one sample of `tree`."""
        rss = 0
        for process in tree:
            try:
                rss += process.memory_info().rss
                io = process.io_counters()
            except (psutil.Error, AttributeError):
                continue
            self._io[process.pid] = (io.read_bytes, io.write_bytes, io.read_count, io.write_count)
        self.peak_rss = max(self.peak_rss, rss)
