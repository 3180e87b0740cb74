"""Container tasks: the runtime detected at start, the `run` argv of an attempt, registry login.

A container task runs as `<runtime> run --rm --name <attempt> --init -e NAME...
-v <host>:<host>[:ro]... [-w <wd>] <run options...> <image> <command...>`. The
task environment's values never appear on the command line: each variable is
named with `-e NAME` and its value is read by the runtime from its own
environment, so secrets do not show in `ps`. Registry passwords go to
`<runtime> login --password-stdin` on standard input (through `process.run_tool`),
with the credentials kept in a per-attempt configuration directory (docker
`--config`, podman `--authfile`) that is removed after the run.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nodeagent import process
from nodeagent.errors import StepError
from nodeagent.layout import NodeLayout, TaskDirs
from nodeagent.messages import AttemptSpec, BindSource, ContainerSpec, redact
from nodeagent.process import ProcessSpec

log = logging.getLogger(__name__)

RUNTIMES = ("docker", "podman")
"""Container runtimes the agent looks for on PATH, in order of preference."""

TOOL_TIMEOUT_SECONDS = 30.0
"""Time limit of `version`, `login` and `rm -f` calls to the runtime."""

DEFAULT_REGISTRY = "docker.io"
"""Registry logged in to when credentials name no server."""

HOST_ONLY_VARIABLES = frozenset({"PATH", "HOME"})
"""Variables of the runtime process that are about the host and are not passed into the container."""

NOT_AVAILABLE = "ContainerRuntimeNotAvailable"
"""Failure code of a container task on a node without a runtime (no code is documented for it)."""

INVALID_SETTINGS = "ContainerSettingsInvalid"
"""Failure code of container settings the agent cannot turn into a `run` command."""

LOGIN_FAILED = "ContainerRegistryLoginFailed"
"""Failure code of a registry login that did not succeed."""

_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

ToolRunner = Callable[[Sequence[str], bytes], process.ToolResult]
"""Runs a helper command with bytes on its standard input (registry login)."""


def run_tool(argv: Sequence[str], stdin: bytes) -> process.ToolResult:
    """`process.run_tool` with TOOL_TIMEOUT_SECONDS: the default ToolRunner."""
    return process.run_tool(argv, input=stdin, timeout=TOOL_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class ContainerRuntime:
    """A runtime that answered `version` at agent start."""

    name: str
    """`docker` or `podman`: what the heartbeat reports."""
    executable: str


@dataclass(frozen=True)
class BindMount:
    """A host directory mounted at the same path in the container."""

    path: Path
    read_only: bool = False

    def flag(self) -> str:
        """The `-v` value of the mount."""
        if ":" in str(self.path) or "," in str(self.path):
            raise _invalid(f"the directory {self.path} cannot be bind-mounted (it contains ':' or ',')")
        return f"{self.path}:{self.path}" + (":ro" if self.read_only else "")


def detect_runtime(path: str, run_process: process.RunFunction = process.run) -> ContainerRuntime | None:
    """The first runtime on `path` whose `version` succeeds (client and engine), or None."""
    for name in RUNTIMES:
        executable = shutil.which(name, path=path)
        if executable is not None and _answers(executable, path, run_process):
            log.info("container runtime %s found at %s", name, executable)
            return ContainerRuntime(name, executable)
    log.info("no container runtime answers on this node; container tasks will fail")
    return None


def heartbeat_value(runtime: ContainerRuntime | None) -> str | None:
    """The NodeHeartbeat.container_runtime value of a node."""
    return None if runtime is None else runtime.name


def _answers(executable: str, path: str, run_process: process.RunFunction) -> bool:
    """Whether `<executable> version` exits 0 within TOOL_TIMEOUT_SECONDS."""
    with tempfile.TemporaryDirectory(prefix="batchyard-runtime-") as scratch:
        folder = Path(scratch)
        spec = ProcessSpec(
            argv=(executable, "version"),
            cwd=folder,
            env={"PATH": path},
            stdout_path=folder / "out",
            stderr_path=folder / "err",
            timeout=TOOL_TIMEOUT_SECONDS,
            kill_grace=1.0,
        )
        try:
            result = run_process(spec)
        except StepError as exc:
            log.info("%s version could not run: %s", executable, exc.message)
            return False
        if result.exit_code != 0:
            log.info("%s version failed: %s", executable, (folder / "err").read_text(errors="replace")[-300:])
        return result.exit_code == 0


def require(runtime: ContainerRuntime | None) -> ContainerRuntime:
    """The runtime, or the pre-processing error of a node that has none."""
    if runtime is None:
        raise StepError(
            NOT_AVAILABLE,
            "the task has container settings but this node has no container runtime (docker or podman)",
            category="servererror",
        )
    return runtime


def _invalid(message: str) -> StepError:
    """The pre-processing error of unusable container settings."""
    return StepError(INVALID_SETTINGS, message)


def source_dir(source: BindSource, layout: NodeLayout, dirs: TaskDirs, spec: AttemptSpec) -> Path | None:
    """The host directory of a bind-mount source; None for JobPrep when the job has no preparation task."""
    if source == "JobPrep":
        if spec.job_preparation_task_id is None:
            return None
        return layout.task_dirs(spec.job_id, spec.job_preparation_task_id).task_dir
    fixed = {
        "Shared": layout.shared,
        "Startup": layout.startup,
        "VfsMounts": layout.fsmounts,
        "Task": dirs.task_dir,
        "Applications": layout.applications,
    }
    return fixed[source]


def bind_mounts(container: ContainerSpec, layout: NodeLayout, dirs: TaskDirs, spec: AttemptSpec) -> list[BindMount]:
    """The mounts of a container: the whole node root when unspecified, else one per listed source."""
    if container.bind_mounts is None:
        return [BindMount(layout.root)]
    sources = [mount.source for mount in container.bind_mounts]
    duplicates = sorted({source for source in sources if sources.count(source) > 1})
    if duplicates:
        raise _invalid(f"bind mount sources are listed more than once: {', '.join(duplicates)}")
    mounts: list[BindMount] = []
    for mount in container.bind_mounts:
        path = source_dir(mount.source, layout, dirs, spec)
        if path is None:
            log.info("attempt %s: no job preparation task, JobPrep is not mounted", spec.attempt_id)
            continue
        mounts.append(BindMount(path, mount.read_only))
    return mounts


def image_reference(image: str) -> str:
    """The image with `:latest` added when it names neither a tag nor a digest."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last or ":" in last:
        return image
    return f"{image}:latest"


def container_name(attempt_id: str) -> str:
    """The container's name: the attempt id, which must be a valid container name."""
    if not _CONTAINER_NAME.match(attempt_id):
        raise _invalid(f"attempt id {attempt_id!r} is not a valid container name")
    return attempt_id


def split_run_options(options: str) -> list[str]:
    """containerRunOptions split with POSIX shell rules."""
    try:
        return shlex.split(options)
    except ValueError as exc:
        raise _invalid(f"containerRunOptions cannot be split: {exc}") from exc


def environment_flags(env: Mapping[str, str]) -> list[str]:
    """`-e NAME` for every task variable except host-only ones; values stay in the runtime's environment."""
    flags: list[str] = []
    for name in sorted(env):
        if name not in HOST_ONLY_VARIABLES:
            flags += ["-e", name]
    return flags


@dataclass(frozen=True)
class RunRequest:
    """Everything that decides the `run` argv of one attempt's container."""

    runtime: ContainerRuntime
    spec: AttemptSpec
    container: ContainerSpec
    command: Sequence[str]
    env: Mapping[str, str]
    mounts: Sequence[BindMount]
    working_dir: Path
    config_dir: Path | None = None
    """The per-attempt registry configuration directory, when the task logged in."""


def subcommand(runtime: ContainerRuntime, name: str, config_dir: Path | None) -> list[str]:
    """`<runtime> <name>`, pointed at a private registry configuration when `config_dir` is set."""
    if config_dir is None:
        return [runtime.executable, name]
    if runtime.name == "podman":
        return [runtime.executable, name, "--authfile", str(config_dir / "auth.json")]
    return [runtime.executable, "--config", str(config_dir), name]


def run_argv(request: RunRequest) -> tuple[str, ...]:
    """`<runtime> run --rm --name <attempt> --init -e.. -v.. [-w wd] <options..> <image> <command..>`."""
    container = request.container
    argv = subcommand(request.runtime, "run", request.config_dir)
    argv += ["--rm", "--name", container_name(request.spec.attempt_id), "--init"]
    argv += environment_flags(request.env)
    for mount in request.mounts:
        argv += ["-v", mount.flag()]
    if container.working_directory == "taskWorkingDirectory":
        argv += ["-w", str(request.working_dir)]
    argv += split_run_options(container.run_options)
    argv.append(image_reference(container.image_name))
    argv += list(request.command)
    return tuple(argv)


def has_credentials(container: ContainerSpec) -> bool:
    """Whether the container settings carry a registry user name and password."""
    return bool(container.registry_username and container.registry_password)


def login_argv(runtime: ContainerRuntime, container: ContainerSpec, config_dir: Path) -> tuple[str, ...]:
    """`<runtime> login <server> -u <user> --password-stdin` (the password never on the command line)."""
    server = container.registry_server or DEFAULT_REGISTRY
    user = container.registry_username or ""
    return (*subcommand(runtime, "login", config_dir), server, "-u", user, "--password-stdin")


def login(runtime: ContainerRuntime, container: ContainerSpec, config_dir: Path, tool: ToolRunner) -> None:
    """Log in to the task's registry, the password on standard input; StepError when it fails."""
    password = container.registry_password or ""
    result = tool(login_argv(runtime, container, config_dir), password.encode())
    if not result.ok:
        server = container.registry_server or DEFAULT_REGISTRY
        output = redact(result.output.replace(password, "REDACTED") if password else result.output)[-300:]
        message = f"logging in to registry {server} as {container.registry_username} failed: {output}"
        raise StepError(LOGIN_FAILED, message)


def remove_argv(runtime: ContainerRuntime, attempt_id: str) -> tuple[str, ...]:
    """`<runtime> rm -f <name>`: the backstop that stops a container whose client was killed."""
    return (runtime.executable, "rm", "-f", attempt_id)
