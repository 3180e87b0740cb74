"""What starting a command through the agent's launcher costs, as another user and as the launcher's own, as JSON.

Starts `/bin/true` N times through `nodeagent.launcher.Launcher` (the agent's launcher process), one
command at a time, as the user nobody (started by nobody's spawner with posix_spawn) and, as the
baseline in the same run, as the launcher's own user (CPython's vfork). Reports the CPU the launcher,
its spawner and the commands they ran used per start, and the wall time per start. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from nodeagent.identity import RunAs
from nodeagent.launcher import Launcher
from nodeagent.process import ProcessSpec


def tree_cpu_seconds(pid: int) -> float:
    """CPU used by a process, its live children and every child either of them reaped."""
    total = 0.0
    root = psutil.Process(pid)
    for process in [root, *root.children()]:
        times = process.cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


def measure(run_as: RunAs | None, runs: int, workdir: Path) -> dict[str, Any]:
    """Start `/bin/true` `runs` times through a fresh launcher; CPU and wall milliseconds per start."""
    spec = ProcessSpec(
        argv=("/bin/true",),
        cwd=workdir,
        env={"PATH": "/usr/bin:/bin"},
        stdout_path=workdir / "stdout.txt",
        stderr_path=workdir / "stderr.txt",
        run_as=run_as,
    )
    launcher = Launcher()
    try:
        for _ in range(50):
            launcher.run(spec)
        assert launcher.pid is not None
        cpu_before = tree_cpu_seconds(launcher.pid)
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            launcher.run(spec)
            walls.append((time.perf_counter() - started) * 1000)
        cpu = tree_cpu_seconds(launcher.pid) - cpu_before
    finally:
        launcher.close()
    return {"cpu_ms_per_start": round(cpu * 1000 / runs, 3), "wall_ms_p50": round(statistics.median(walls), 3)}


def main() -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("starting commands as another user needs root")
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch:
        workdir = Path(scratch)
        workdir.chmod(0o777)
        other = measure(RunAs(nobody.pw_uid, nobody.pw_gid, (), "/", "nobody"), args.runs, workdir)
        own = measure(None, args.runs, workdir)
    result = {
        "runs": args.runs,
        "as_another_user": other,
        "as_the_launchers_user": own,
        "ratio_other_over_own": round(other["cpu_ms_per_start"] / own["cpu_ms_per_start"], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
