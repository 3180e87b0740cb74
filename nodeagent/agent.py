"""The agent runtime: wires settings to the client, file server, heartbeat and runner, and handles dispatches."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from nodeagent import __version__, process, runner
from nodeagent.blob import AzureBlobStore, BlobStore
from nodeagent.client import ControllerClient
from nodeagent.files import FileServer
from nodeagent.heartbeat import Heartbeat
from nodeagent.layout import NodeLayout
from nodeagent.messages import Dispatch, NodeHeartbeat, TaskReport
from nodeagent.reporter import Reporter
from nodeagent.running import RunningAttempts
from nodeagent.settings import AgentSettings, agent_path
from nodeagent.state import Spool
from nodeagent.steps.base import RunDeps

log = logging.getLogger(__name__)


class AgentRuntime:
    """Everything one node agent process runs besides the Celery worker itself."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        client: ControllerClient | None = None,
        blob: BlobStore | None = None,
        run_process: process.RunFunction = process.run,
    ) -> None:
        self.settings = settings
        self.layout = NodeLayout(settings.root_dir.expanduser().absolute())
        self.client = client or ControllerClient(settings.controller_url, settings.node_secret)
        self.reporter = Reporter(self.client, Spool(self.layout))
        self.running = RunningAttempts()
        self.files = FileServer(
            self.layout.root, settings.node_secret, settings.file_server_host, settings.file_server_port
        )
        self.heartbeat = Heartbeat(
            self.client.heartbeat, self.build_heartbeat, self.cancel_attempts, settings.heartbeat_seconds
        )
        self.deps = RunDeps(
            blob=blob or AzureBlobStore(),
            reporter=self.reporter,
            agent_path=agent_path(),
            kill_grace=settings.kill_grace_seconds,
            run_process=run_process,
            on_process_start=self.running.set_process,
        )
        self.boot_time = datetime.now(UTC)
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
        self.files.start()
        # Snapshot the spool before attempts start so that only earlier runs' reports are replayed.
        pending = self.reporter.pending()
        self.heartbeat.beat()
        self.heartbeat.start()
        threading.Thread(target=self.reporter.replay, args=(pending,), name="report-replay", daemon=True).start()
        log.info("node %s: agent started, files at %s", self.settings.node_id, self.file_server_url)

    def request_stop(self) -> None:
        """Begin shutting down: no new claims, stop retries, kill every running attempt's processes."""
        self.client.stop.set()
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
        self.heartbeat.stop()
        self.files.stop()
        self.client.close()

    def build_heartbeat(self) -> NodeHeartbeat:
        """The heartbeat describing this node now."""
        return NodeHeartbeat(
            node_id=self.settings.node_id,
            pool_id=self.settings.pool_id,
            task_slots=self.settings.task_slots,
            running_attempts=self.running.ids(),
            file_server_url=self.file_server_url,
            ip_address=self.settings.advertise_host,
            agent_version=__version__,
            boot_time=self.boot_time,
        )

    def cancel_attempts(self, attempt_ids: list[str]) -> None:
        """Take away attempts the controller says are no longer this node's."""
        for attempt_id in attempt_ids:
            self.running.cancel(attempt_id)

    def handle_dispatch(self, payload: Mapping[str, Any]) -> TaskReport | None:
        """Validate, claim and run one dispatched attempt; the report sent, or None when dropped."""
        dispatch = self._accept(payload)
        if dispatch is None:
            return None
        spec = self.client.claim(dispatch.attempt_id, self.settings.node_id)
        if spec is None:
            return None
        handle = self.running.add(spec.attempt_id)
        if handle is None:
            log.info("attempt %s: already running here, duplicate dropped", spec.attempt_id)
            return None
        try:
            return runner.run(spec, self.layout, self.deps, handle.cancel).report
        finally:
            self.running.remove(spec.attempt_id)

    def _accept(self, payload: Mapping[str, Any]) -> Dispatch | None:
        """The dispatch if it is valid, for this node, and the agent is not stopping."""
        try:
            dispatch = Dispatch.model_validate(payload)
        except ValidationError as exc:
            log.error("dropping an invalid dispatch: %s", exc)
            return None
        if dispatch.node_id != self.settings.node_id:
            log.warning(
                "attempt %s: dispatched to node %s, not %s; dropped",
                dispatch.attempt_id,
                dispatch.node_id,
                self.settings.node_id,
            )
            return None
        if self.client.stop.is_set():
            log.info("attempt %s: agent stopping, not claimed", dispatch.attempt_id)
            return None
        return dispatch
