"""The agent runtime: wires settings to the client, file server, heartbeat and runner, and handles dispatches.

Besides the attempts, it runs four background threads: the heartbeat, the
fence (`nodeagent.fencing`), the pool config applier (accounts, packages,
start task) and the retention sweeper, and job release tasks when the
controller asks for them (`nodeagent.jobtasks`), plus the launcher process that starts
every command and kills them if the agent dies (`nodeagent.launcher`). It obeys the node
commands of heartbeat answers: `reboot` and `leave` stop every attempt
(unreported) and shut the Celery worker down; `nodeagent.__main__` then
re-executes the agent or exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nodeagent import __version__, cgroups, container, process, runner
from nodeagent.blob import AzureBlobStore, BlobStore
from nodeagent.client import ControllerClient
from nodeagent.errors import ControllerUnavailable
from nodeagent.fencing import Fence
from nodeagent.files import FileServer
from nodeagent.heartbeat import Heartbeat
from nodeagent.identity import IdentityResolver
from nodeagent.jobtasks import JobTasks
from nodeagent.launcher import Launcher
from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptSpec, Dispatch, HeartbeatAnswer, NodeCommand, NodeHeartbeat, TaskReport
from nodeagent.poolconfig import ApplyDeps, PoolConfigApplier
from nodeagent.reporter import Reporter
from nodeagent.retention import Retention
from nodeagent.running import RunningAttempts
from nodeagent.settings import AgentSettings, agent_path
from nodeagent.state import Spool
from nodeagent.steps.base import RunDeps

log = logging.getLogger(__name__)


def terminate_worker() -> None:
    """Ask this process's Celery worker for a warm shutdown (SIGTERM to itself)."""
    os.kill(os.getpid(), signal.SIGTERM)


class AgentRuntime:
    """Everything one node agent process runs besides the Celery worker itself."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        client: ControllerClient | None = None,
        blob: BlobStore | None = None,
        run_process: process.RunFunction | None = None,
        identities: IdentityResolver | None = None,
        launcher: Launcher | None = None,
        shutdown_worker: Callable[[], None] = terminate_worker,
    ) -> None:
        self.settings = settings
        self.layout = NodeLayout(settings.root_dir.expanduser().absolute())
        self.client = client or ControllerClient(
            settings.controller_url, settings.node_secret, heartbeat_timeout=settings.heartbeat_timeout_seconds
        )
        self.launcher = launcher or Launcher()
        """Starts every command the agent runs (unless `run_process` is given) and kills them if the agent dies."""
        run_process = run_process or self.launcher.run
        self.running = RunningAttempts()
        self.slots = ThreadPoolExecutor(max_workers=settings.task_slots, thread_name_prefix="slot")
        """Runs the attempts, each on a thread of its own, however they were claimed."""
        self.reporter = Reporter(
            self.client,
            Spool(self.layout),
            settings.node_id,
            on_delivered=self.running.remove,
            on_next=self._start_claimed,
            claiming=self.running.order.claim,
        )
        self.fence = Fence(
            self.running.fence, heartbeat_seconds=settings.heartbeat_seconds, default_seconds=settings.fence_seconds
        )
        self.files = FileServer(
            self.layout.root, settings.node_secret, settings.file_server_host, settings.file_server_port
        )
        self.heartbeat = Heartbeat(
            self._send_heartbeat,
            self.build_heartbeat,
            self.cancel_attempts,
            settings.heartbeat_seconds,
            on_answer=self.on_heartbeat_answer,
            on_recover=self.client.wake_retries,
        )
        self.identities = identities or IdentityResolver.for_agent(settings.user_prefix)
        self.retention = Retention(
            self.layout, self.identities.remove_task_user, interval=settings.retention_sweep_seconds
        )
        blob = blob or AzureBlobStore()
        self.pool_config = PoolConfigApplier(
            ApplyDeps(
                node_id=settings.node_id,
                layout=self.layout,
                identities=self.identities,
                blob=blob,
                agent_path=agent_path(),
                run_process=run_process,
                kill_grace=settings.kill_grace_seconds,
            )
        )
        self.lease_seconds: float | None = None
        """The attempt lease length the controller last announced."""
        self.deps = RunDeps(
            blob=blob,
            reporter=self.reporter,
            agent_path=agent_path(),
            kill_grace=settings.kill_grace_seconds,
            run_process=run_process,
            on_process_start=self.running.set_process,
            identities=self.identities,
        )
        self.boot_time = datetime.now(UTC)
        self.job_tasks = JobTasks(
            self.layout, lambda: self.deps, self.client.job_task_report, boot_id=self.boot_time.isoformat()
        )
        self.deps = replace(self.deps, job_tasks=self.job_tasks, gang=self.client)
        self.exit_action: NodeCommand | None = None
        """The node command that stopped the agent, if one did: `__main__` re-executes it or exits 0."""
        self._shutdown_worker = shutdown_worker
        self._command_lock = threading.Lock()
        self._started = False
        self._stopped = False

    @property
    def file_server_url(self) -> str:
        """URL of this node's file server as other hosts reach it."""
        return self.files.url(self.settings.advertise_host)

    def start(self) -> None:
        """Create the node tree, serve files, send the first heartbeat, start the loop, replay reports."""
        if self._started:
            return
        self._started = True
        self.layout.create()
        self._check_root_reachable()
        self._detect_node_features()
        self.files.start()
        # Snapshot the spool before attempts start so that only earlier runs' reports are replayed.
        pending = self.reporter.pending()
        self.pool_config.start()
        self.retention.start()
        self.heartbeat.beat()
        self.heartbeat.start()
        self.fence.start()
        self.reporter.replay(pending)
        log.info("node %s: agent started, files at %s", self.settings.node_id, self.file_server_url)

    def _detect_node_features(self) -> None:
        """Find out whether attempts get cgroups and whether container tasks can run; clear stale cgroups."""
        self.deps = replace(
            self.deps,
            cgroups=cgroups.detect(
                self.settings.cgroups, cgroups.node_group_name(self.settings.node_id, self.layout.root)
            ),
            container_runtime=container.detect_runtime(agent_path()),
        )
        stale = cgroups.sweep(self.deps.cgroups)
        if stale:
            log.info("node %s: removed cgroups left by an earlier run: %s", self.settings.node_id, stale)

    def request_stop(self) -> None:
        """Begin shutting down: no new claims, stop retries, kill every running attempt's processes."""
        self.client.halt()
        cancelled = self.running.cancel_all()
        if cancelled:
            log.info("node %s: stopping running attempts %s", self.settings.node_id, cancelled)

    def stop(self) -> None:
        """Finish shutting down: wait for attempts to stop, kill leftovers, stop heartbeats and the file server."""
        if self._stopped:
            return
        self._stopped = True
        self.request_stop()
        if not self.running.wait_empty(self.settings.kill_grace_seconds + 2.0):
            self.running.kill_now()
        self.reporter.stop()
        self.slots.shutdown(wait=False, cancel_futures=True)
        self._last_heartbeat()
        cgroups.remove_node(self.deps.cgroups)
        self.fence.stop()
        self.heartbeat.stop()
        self.pool_config.stop()
        self.retention.stop()
        self.files.stop()
        self.client.close()
        self.launcher.close()

    def _last_heartbeat(self) -> None:
        """Tell the controller what still runs (usually nothing), confirming the stops it asked for."""
        try:
            self._send_heartbeat(self.build_heartbeat())
        except ControllerUnavailable as exc:
            log.info("node %s: last heartbeat not answered: %s", self.settings.node_id, exc)

    def build_heartbeat(self) -> NodeHeartbeat:
        """The heartbeat describing this node now; the attempts it runs are listed as it is sent."""
        status = self.pool_config.status()
        return NodeHeartbeat(
            node_id=self.settings.node_id,
            pool_id=self.settings.pool_id,
            task_slots=self.settings.task_slots,
            file_server_url=self.file_server_url,
            ip_address=self.settings.advertise_host,
            agent_version=__version__,
            boot_time=self.boot_time,
            readiness=status.readiness,
            pool_config_version=status.version,
            start_task=status.start_task,
            container_runtime=container.heartbeat_value(self.deps.container_runtime),
        )

    def _send_heartbeat(self, beat: NodeHeartbeat) -> HeartbeatAnswer:
        """Send a heartbeat listing the attempts running as it is sent (no claim is answered in between)."""
        with self.running.order.heartbeat(self.settings.heartbeat_timeout_seconds) as claims_in_flight:
            now = beat.model_copy(update={"running_attempts": self.running.ids(), "claims_in_flight": claims_in_flight})
            return self.client.heartbeat(now)

    def on_heartbeat_answer(self, answer: HeartbeatAnswer) -> None:
        """Renew the fence, keep the lease length, hand a changed pool config to the applier, obey a command."""
        self.fence.heard(answer.lease_seconds)
        self.lease_seconds = answer.lease_seconds
        if answer.command is not None:
            self.obey(answer.command)
            return
        if answer.pool_config is not None:
            self.pool_config.offer(answer.pool_config)
        for release in answer.job_releases:
            self.job_tasks.release(release)

    def obey(self, command: NodeCommand) -> None:
        """Act on a node command once: stop every attempt (they are not reported), then stop the worker."""
        with self._command_lock:
            if self.exit_action is not None:
                return
            self.exit_action = command
        log.warning(
            "node %s: the controller asks this agent to %s; stopping attempts %s",
            self.settings.node_id,
            command,
            self.running.ids(),
        )
        self.request_stop()
        self._shutdown_worker()

    def cancel_attempts(self, attempt_ids: list[str]) -> None:
        """Take away attempts the controller says are no longer this node's."""
        for attempt_id in attempt_ids:
            self.running.cancel(attempt_id)

    def handle_dispatch(self, payload: Mapping[str, Any]) -> list[str]:
        """Validate and claim the dispatched attempts and start those claimed; their ids."""
        dispatch = self._accept(payload)
        if dispatch is None:
            return []
        # Listed as running from before the claim, so no heartbeat can tell the controller they are not here.
        offered = []
        for offer in dispatch.offers:
            if self.running.add(offer.attempt_id) is None:
                log.info("attempt %s: already running here, duplicate dropped", offer.attempt_id)
            else:
                offered.append(offer.attempt_id)
        if not offered:
            return []
        with self.running.order.claim():
            answer = self.client.claim_all(self.settings.node_id, offered)
        for attempt_id in answer.refused:
            self.running.remove(attempt_id)
        return self._start_claimed(list(answer.specs))

    def _start_claimed(self, specs: list[AttemptSpec]) -> list[str]:
        """Start claimed attempts on the slot threads; the ids of those started."""
        started = []
        for spec in specs:
            handle = self.running.add(spec.attempt_id) or self.running.handle(spec.attempt_id)
            if handle is None:
                continue
            try:
                self.slots.submit(self._run_attempt, spec, handle.cancel)
            except RuntimeError:
                log.info("attempt %s: agent stopping, not started", spec.attempt_id)
                self.running.remove(spec.attempt_id)
                continue
            started.append(spec.attempt_id)
        return started

    def _run_attempt(self, spec: AttemptSpec, cancel: threading.Event) -> TaskReport | None:
        """Run one claimed attempt; the attempt is forgotten here unless its report was queued (then once sent)."""
        report = None
        try:
            report = self._run_in_task_dir(spec, cancel)
        finally:
            if report is None:
                self.running.remove(spec.attempt_id)
        return report

    def _run_in_task_dir(self, spec: AttemptSpec, cancel: threading.Event) -> TaskReport | None:
        """Run the attempt with its task directory held back from retention, then record it for retention."""
        task_dir = self.layout.task_dirs(spec.job_id, spec.task_id).task_dir
        self.retention.cancel(task_dir)
        try:
            return runner.run(spec, self.layout, self.deps, cancel).report
        finally:
            self._keep_for_retention(spec, task_dir)

    def _keep_for_retention(self, spec: AttemptSpec, task_dir: Path) -> None:
        """Record the finished attempt's directory (and per-task account) for deletion after its retention time."""
        try:
            self.retention.schedule(task_dir, spec.retention_seconds, self.identities.task_user(spec))
        except OSError as exc:
            log.error("attempt %s: cannot record its task directory for retention: %s", spec.attempt_id, exc)

    def _check_root_reachable(self) -> None:
        """Log an error when task users cannot reach the node root (a parent is not searchable by others)."""
        if not self.identities.switching:
            return
        for directory in (self.layout.root, *self.layout.root.parents):
            if not directory.stat().st_mode & stat.S_IXOTH:
                log.error(
                    "node %s: %s is not searchable by others, so tasks running as their own users cannot reach %s",
                    self.settings.node_id,
                    directory,
                    self.layout.root,
                )
                return

    def _accept(self, payload: Mapping[str, Any]) -> Dispatch | None:
        """The dispatch if it is valid, for this node, and the agent is neither stopping nor fenced."""
        try:
            dispatch = Dispatch.model_validate(payload)
        except ValidationError as exc:
            log.error("dropping an invalid dispatch: %s", exc)
            return None
        if dispatch.node_id != self.settings.node_id:
            for offer in dispatch.offers:
                log.warning(
                    "attempt %s: dispatched to node %s, not %s; dropped",
                    offer.attempt_id,
                    dispatch.node_id,
                    self.settings.node_id,
                )
            return None
        offered = [offer.attempt_id for offer in dispatch.offers]
        if self.client.stop.is_set():
            log.info("attempts %s: agent stopping, not claimed", offered)
            return None
        if self.fence.silence() > self.fence.window:
            # They would be fenced as soon as they started; the controller offers them again later.
            log.warning("attempts %s: no heartbeat answered lately, not claimed", offered)
            return None
        return dispatch
