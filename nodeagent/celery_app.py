"""The agent's Celery app and all of its Celery configuration.

A Celery message is only a hint that an attempt is offered to this node: it is
acknowledged on receipt, and the controller's claim and lease decide who runs
the attempt. JSON is the only serializer, no results are stored, and each
worker consumes only its own node queue.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down

from nodeagent import tasks
from nodeagent.agent import AgentRuntime
from nodeagent.messages import node_queue
from nodeagent.settings import AgentSettings

log = logging.getLogger(__name__)

HEALTH_CHECK_SECONDS = 25
"""How often kombu checks the broker connection."""


def celery_config(settings: AgentSettings) -> dict[str, Any]:
    """Every Celery setting of the agent worker."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_transport_options": {
            # Only covers messages taken but not yet started: they are acknowledged before the claim.
            "visibility_timeout": settings.visibility_timeout_seconds,
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_SECONDS,
            "global_keyprefix": settings.broker_key_prefix,
        },
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": False,
        "task_default_queue": node_queue(settings.node_id),
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.task_slots,
        "worker_pool": "threads",
        "worker_enable_remote_control": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
    }


def worker_argv(settings: AgentSettings) -> list[str]:
    """Arguments of `celery worker` for this node."""
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={settings.task_slots}",
        "-n",
        f"{settings.node_id}@%h",
        "-Q",
        node_queue(settings.node_id),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--loglevel={settings.log_level}",
    ]


def create_app(settings: AgentSettings, runtime: AgentRuntime) -> Celery:
    """A configured Celery app whose task runs attempts on `runtime`, with the worker signal hooks connected."""
    app = Celery("batchyard-agent", set_as_current=False)
    app.conf.update(celery_config(settings))
    tasks.register(app, runtime)
    _connect_signals(app, runtime)
    return app


def _connect_signals(app: Celery, runtime: AgentRuntime) -> None:
    """Start the runtime when the worker is ready; stop attempts when it begins and ends shutting down."""

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is app:
            runtime.start()

    def on_shutting_down(sender: Any = None, **_: Any) -> None:
        runtime.request_stop()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is app:
            runtime.stop()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutting_down, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
