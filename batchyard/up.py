"""`batchyard up`: Redis, Azurite, the controller and N agents on 127.0.0.1, in the foreground."""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from batchyard import envfile, procs, services, tools
from batchyard.client import BatchClient
from batchyard.credentials import Credentials, load_or_create
from batchyard.ports import PortInUse, free_port, require_free
from batchyard.readiness import StartupFailed, http_answers, redis_answers, wait_until
from batchyard.services import Layout
from controller.providers.local import stop_recorded

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 20.0
"""Longest Redis may take to answer PING (it replays the append-only file first)."""

AZURITE_TIMEOUT_SECONDS = 60.0
"""Longest Azurite may take to answer HTTP."""

CONTROLLER_TIMEOUT_SECONDS = 60.0
"""Longest the controller may take to answer /healthz."""

CONTROLLER_GRACE_SECONDS = 40.0
"""How long the controller gets to stop (its agents stop their tasks first) after SIGTERM before SIGKILL."""

AGENTS_TIMEOUT_SECONDS = 120.0
"""Longest the pool's agents may take to register after the pool exists."""

SERVICE_GRACE_SECONDS = 10.0
"""How long the controller, Azurite and Redis get after SIGTERM before SIGKILL."""

LOCK_FILE_NAME = "up.lock"
"""Locked by the running `batchyard up` of a data directory."""

SUPERVISE_SECONDS = 0.5
"""How often a running stack checks that its children are still alive."""


@dataclass(frozen=True)
class UpOptions:
    """The flags of `batchyard up`."""

    data_dir: Path
    port: int = 8080
    blob_port: int = 10000
    redis_port: int = 0
    agents: int = 2
    slots: int = 4


class UpError(Exception):
    """`batchyard up` cannot go on; the message is for the user."""


class DataDirInUse(Exception):
    """Another `batchyard up` runs on the same data directory."""


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived."""


@dataclass
class Stack:
    """The children of one `batchyard up`, in start order."""

    options: UpOptions
    credentials: Credentials
    layout: Layout
    redis_port: int
    lock: int
    services: list[procs.Child] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The controller's URL."""
        return services.controller_url(self.options.port)

    def start_redis(self, binary: str) -> None:
        """Start the private Redis and wait for PING."""
        self.layout.redis_dir.mkdir(parents=True, exist_ok=True)
        argv = services.redis_argv(binary, self.redis_port, self.layout)
        child = self._start_service("redis", argv, services.base_env())
        wait_until(child, redis_answers(services.redis_url(self.redis_port)), REDIS_TIMEOUT_SECONDS, "answering PING")

    def start_azurite(self, binary: str) -> None:
        """Start Azurite's blob service and wait for any HTTP answer."""
        self.layout.azurite_dir.mkdir(parents=True, exist_ok=True)
        argv = services.azurite_argv(binary, self.options.blob_port, self.layout)
        child = self._start_service("azurite", argv, services.base_env())
        probe = http_answers(envfile.blob_endpoint(self.options.blob_port) + "?comp=list")
        wait_until(child, probe, AZURITE_TIMEOUT_SECONDS, "answering HTTP")

    def start_controller(self) -> None:
        """Start the controller and wait for /healthz to answer 200."""
        options = self.options
        env = services.controller_env(options.port, self.redis_port, options.blob_port, self.credentials, self.layout)
        child = self._start_service("controller", services.python_argv("controller"), env)
        wait_until(child, http_answers(self.url + "/healthz", 200), CONTROLLER_TIMEOUT_SECONDS, "answering /healthz")

    def wait_for_agents(self) -> None:
        """Wait until the controller's local node provider has the pool's agents registered and ready."""
        deadline = time.monotonic() + AGENTS_TIMEOUT_SECONDS
        with BatchClient(self.url, self.credentials.account_name, self.credentials.account_key) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                response = client.get(f"/pools/{services.POOL_ID}/nodes")
                nodes = response.json().get("value", []) if response.status_code == 200 else []
                if sum(node["state"] in ("idle", "running") for node in nodes) >= self.options.agents:
                    return
                time.sleep(0.2)
        raise UpError(f"the agents of pool {services.POOL_ID} did not register; see {self.layout.logs_dir}")

    def create_pool(self) -> None:
        """Create pool `local` with one node per agent; a pool left by an earlier run is resized to match."""
        body = services.pool_body(self.options.agents, self.options.slots)
        with BatchClient(self.url, self.credentials.account_name, self.credentials.account_key) as client:
            response = client.post("/pools", body)
            if response.status_code == 409 and "PoolExists" in response.text:
                resize = {"targetDedicatedNodes": self.options.agents}
                response = client.post(f"/pools/{services.POOL_ID}/resize", resize)
        if response.status_code in (201, 202):
            return
        raise UpError(f"creating pool {services.POOL_ID} failed: HTTP {response.status_code} {response.text[:500]}")

    def _start_service(self, name: str, argv: list[str], env: dict[str, str]) -> procs.Child:
        """Start one of the services and remember it."""
        child = procs.start(name, argv, env, self.layout.log(name))
        self.services.append(child)
        return child

    def check_alive(self) -> None:
        """Raise StartupFailed when any child has exited."""
        for child in self.services:
            if not child.alive():
                raise StartupFailed(child, f"exited unexpectedly with code {child.process.returncode}")

    def stop(self) -> None:
        """Stop everything, agents first, then the services in reverse start order, then remove task accounts."""
        for child in reversed(self.services):
            procs.stop_all([child], CONTROLLER_GRACE_SECONDS if child.name == "controller" else SERVICE_GRACE_SECONDS)
        # The controller stops its agents; any it could not (it was killed) are stopped here.
        stop_recorded(self.layout.nodes_dir)
        remove_accounts(self.layout.user_prefix)


def remove_accounts(prefix: str) -> None:
    """Remove the OS accounts this stack's agents created (only when running as root, where they create any)."""
    if os.geteuid() != 0:
        return
    from nodeagent.users import Accounts, is_ours

    accounts = Accounts.detect()
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix) and is_ours(entry):
            accounts.remove(entry.pw_name)


def check_ports(options: UpOptions) -> None:
    """Fail before starting anything when a chosen port is taken."""
    require_free(options.port, "--port")
    require_free(options.blob_port, "--blob-port")
    if options.redis_port:
        require_free(options.redis_port, "--redis-port")


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """Signal handler: unwind to the code that stops the stack."""
    raise Interrupted(signal.Signals(signum).name)


def _ignore_signals() -> None:
    """Let an orderly stop finish even if more signals arrive."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def announce(stack: Stack, env_path: Path, values: dict[str, str]) -> None:
    """Tell the user where the stack is and how to reach it (this prints the account key, deliberately)."""
    options = stack.options
    lines = [
        "Batchyard is up.",
        f"  Batch endpoint:     {values['BATCH_ACCOUNT_URL']}",
        f"  Account name:       {values['BATCH_ACCOUNT_NAME']}",
        f"  Account key:        {values['BATCH_ACCOUNT_KEY']}",
        f"  Storage (Azurite):  {values['AZURE_STORAGE_CONNECTION_STRING']}",
        f"  Pool:               {services.POOL_ID} ({options.agents} agents x {options.slots} slots)",
        f"  Logs:               {stack.layout.logs_dir}",
        f"Load these settings in a shell with:  . {env_path}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def bring_up(stack: Stack) -> None:
    """Start every child in order and write the env file once all answer."""
    redis_binary = tools.find_redis_server()
    azurite_binary = tools.find_azurite()
    stack.start_redis(redis_binary)
    stack.start_azurite(azurite_binary)
    stack.start_controller()
    stack.create_pool()
    stack.wait_for_agents()
    values = envfile.env_values(stack.url, stack.credentials, stack.options.blob_port)
    announce(stack, envfile.write(stack.layout.data_dir, values), values)


def supervise(stack: Stack) -> None:
    """Run until interrupted; raise StartupFailed if a child dies."""
    while True:
        stack.check_alive()
        time.sleep(SUPERVISE_SECONDS)


def lock_data_dir(data_dir: Path) -> int:
    """Hold an exclusive lock on the data directory for the life of this process; two Redis on one AOF corrupt it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(data_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise DataDirInUse(f"another batchyard up is running on {data_dir}") from None
    return descriptor


def make_stack(options: UpOptions) -> Stack:
    """Check ports, lock and prepare the data directory, and load the credentials."""
    check_ports(options)
    lock = lock_data_dir(options.data_dir)
    layout = Layout(options.data_dir)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    (layout.data_dir / envfile.ENV_FILE_NAME).unlink(missing_ok=True)
    credentials = load_or_create(layout.data_dir)
    return Stack(options, credentials, layout, redis_port=options.redis_port or free_port(), lock=lock)


def run(options: UpOptions) -> int:
    """Bring the stack up and keep it running until SIGINT or SIGTERM; return the exit code."""
    try:
        stack = make_stack(options)
    except (PortInUse, DataDirInUse) as error:
        print(f"batchyard up: {error}", file=sys.stderr)
        return 2
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run_stack(stack)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(stack.lock)


def run_stack(stack: Stack) -> int:
    """Bring the stack up, supervise it, and always stop it; return the exit code."""
    try:
        bring_up(stack)
        supervise(stack)
    except Interrupted as signal_name:
        log.info("%s received; stopping", signal_name)
        return 0
    except (StartupFailed, UpError, tools.ToolMissing) as error:
        print(f"batchyard up: {error}", file=sys.stderr)
        return 1
    finally:
        _ignore_signals()
        stack.stop()
    return 0
