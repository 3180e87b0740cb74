"""The pool config a node applies: user accounts, application packages, then the start task.

The controller answers a heartbeat with the pool's `PoolConfig` while the
node reports no applied version, that is after the agent starts or restarts.
A background thread applies the newest config offered: it creates the
accounts, installs the packages, then runs the start task. Readiness, as the heartbeat reports it:

| readiness | when |
|---|---|
| `starting` | no config applied yet (the controller may be down), or its accounts or packages failed (retried) |
| `waitingforstarttask` | the start task runs and must succeed before tasks come |
| `starttaskfailed` | it must succeed and failed after all its retries |
| `ready` | applied: no start task, it succeeded, or it need not succeed and was started |

The reported `pool_config_version` is that of the last config whose accounts
and packages were installed and whose start task was started (its outcome is
in readiness and the start task report). Nothing is persisted: a restarted
agent reports no version, gets the config again and reruns the start task,
as Azure does after a reboot. A newer config cancels a start task still running.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any

from nodeagent import apppackages, process, starttask
from nodeagent.blob import BlobStore
from nodeagent.errors import StepError
from nodeagent.identity import IdentityResolver
from nodeagent.layout import NodeLayout
from nodeagent.messages import NodeReadiness, PoolConfig, StartTaskReport, StartTaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeStatus:
    """What the heartbeat says about the pool config."""

    readiness: NodeReadiness = "starting"
    version: str = ""
    start_task: StartTaskReport | None = None


@dataclass(frozen=True)
class ApplyDeps:
    """What applying a config needs from the agent."""

    node_id: str
    layout: NodeLayout
    identities: IdentityResolver
    blob: BlobStore
    agent_path: str
    run_process: process.RunFunction = process.run
    kill_grace: float = 5.0
    retry_delay: float = 1.0
    """Seconds between two tries of the start task."""
    failure_backoff: float = 30.0
    """Seconds before accounts and packages that failed are tried again."""


class PoolConfigApplier:
    """Applies the newest pool config offered, in its own thread, and tracks the node's readiness."""

    def __init__(self, deps: ApplyDeps) -> None:
        self._deps = deps
        self._lock = threading.Lock()
        self._status = NodeStatus()
        self._wanted: PoolConfig | None = None
        self._done = ""
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def status(self) -> NodeStatus:
        """The readiness, applied version and start task report now."""
        with self._lock:
            return self._status

    def offer(self, config: PoolConfig) -> None:
        """Apply `config` unless it is the one already wanted; a start task of an older config is stopped."""
        with self._lock:
            if self._wanted is not None and self._wanted.version == config.version:
                return
            log.info("node %s: pool %s config version %s received", self._deps.node_id, config.pool_id, config.version)
            self._wanted = config
            self._cancel.set()
        self._wake.set()

    def start(self) -> None:
        """Start the applying thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pool-config", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, killing a start task that still runs."""
        self._stopping.set()
        with self._lock:
            self._cancel.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._deps.kill_grace + 10.0)
            self._thread = None

    def apply(self, config: PoolConfig, cancel: threading.Event) -> bool:
        """Apply `config` now; False when its accounts or packages failed and it must be tried again."""
        self._update(readiness="starting")
        try:
            self._install(config)
        except StepError as exc:
            log.error(
                "node %s: pool config %s not applied: %s %s", self._deps.node_id, config.version, exc.code, exc.message
            )
            return False
        if config.start_task is None:
            self._update(readiness="ready", version=config.version)
            log.info("node %s: pool config %s applied, node ready", self._deps.node_id, config.version)
            return True
        self._run_start_task(config, config.start_task, cancel)
        return True

    def _loop(self) -> None:
        """Apply each newly wanted config; back off after a failure; stop when asked."""
        while not self._stopping.is_set():
            picked = self._pick()
            if picked is None:
                self._wake.wait()
                self._wake.clear()
                continue
            config, cancel = picked
            if self._apply_safely(config, cancel):
                with self._lock:
                    self._done = config.version
            else:
                self._wake.wait(self._deps.failure_backoff)
                self._wake.clear()

    def _apply_safely(self, config: PoolConfig, cancel: threading.Event) -> bool:
        """`apply`, with an unexpected error logged and treated as a failure to retry."""
        try:
            return self.apply(config, cancel)
        except Exception:
            log.exception("node %s: applying pool config %s crashed", self._deps.node_id, config.version)
            return False

    def _pick(self) -> tuple[PoolConfig, threading.Event] | None:
        """The wanted config and a fresh cancel flag for it, unless it is already applied."""
        with self._lock:
            if self._wanted is None or self._wanted.version == self._done:
                return None
            self._cancel = threading.Event()
            return self._wanted, self._cancel

    def _install(self, config: PoolConfig) -> None:
        """Create the pool's accounts and install its packages."""
        for account in config.user_accounts:
            self._deps.identities.ensure_account(account)
        apppackages.install_all(config.application_packages, self._deps.layout, self._deps.blob)

    def _run_start_task(self, config: PoolConfig, spec: StartTaskSpec, cancel: threading.Event) -> None:
        """Run the start task and set the readiness its outcome gives."""
        try:
            run_as = self._deps.identities.for_start_task(spec)
        except StepError as exc:
            self._finish(config, spec, starttask.failed_report(exc.failure_info()))
            return
        waiting: NodeReadiness = "waitingforstarttask" if spec.wait_for_success else "ready"
        self._update(readiness=waiting, version=config.version)
        deps = self._deps
        run = starttask.StartTaskRun(
            config=config,
            spec=spec,
            node_id=deps.node_id,
            layout=deps.layout,
            run_as=run_as,
            blob=deps.blob,
            agent_path=deps.agent_path,
            run_process=deps.run_process,
            kill_grace=deps.kill_grace,
            retry_delay=deps.retry_delay,
        )
        report = starttask.run(run, cancel, self._on_report)
        if report is not None:
            self._finish(config, spec, report)

    def _on_report(self, report: StartTaskReport) -> None:
        """Keep the latest start task report for the heartbeat."""
        self._update(start_task=report)

    def _finish(self, config: PoolConfig, spec: StartTaskSpec, report: StartTaskReport) -> None:
        """Record how the start task ended and the readiness it gives."""
        failed = report.result != "success"
        readiness: NodeReadiness = "starttaskfailed" if failed and spec.wait_for_success else "ready"
        self._update(readiness=readiness, version=config.version, start_task=report)
        log.info(
            "node %s: start task of pool config %s %s, node %s",
            self._deps.node_id,
            config.version,
            "failed" if failed else "succeeded",
            readiness,
        )

    def _update(self, **changes: Any) -> None:
        """Replace fields of the status."""
        with self._lock:
            self._status = dataclasses.replace(self._status, **changes)
