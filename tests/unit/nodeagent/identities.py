"""Helpers for tests that run real processes as real OS accounts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nodeagent import process
from nodeagent.identity import RunAs
from nodeagent.process import ProcessSpec


def run_as_user(run_as: RunAs, cwd: Path, *argv: str) -> tuple[int | None, str]:
    """Run `argv` as `run_as` in `cwd` with process.run; its exit code and stdout (stderr appended)."""
    with tempfile.TemporaryDirectory() as logs:
        out, err = Path(logs) / "stdout.txt", Path(logs) / "stderr.txt"
        spec = ProcessSpec(
            argv=argv,
            cwd=cwd,
            env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
            stdout_path=out,
            stderr_path=err,
            kill_grace=1.0,
            run_as=run_as,
        )
        result = process.run(spec)
        return result.exit_code, out.read_text() + err.read_text()


def id_of(run_as: RunAs, cwd: Path, flag: str) -> str:
    """The output of `id <flag>` run as `run_as`."""
    code, output = run_as_user(run_as, cwd, "/usr/bin/id", flag)
    assert code == 0, output
    return output.strip()
