"""The official azure-batch 15.x client against a local stack, and waiting for what it shows."""

from __future__ import annotations

import time
from collections.abc import Callable

from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential

from tests.support.stack import LocalStack

TIMEOUT_SECONDS = 90.0
"""Longest any end-to-end wait lasts before the test fails."""


_clients: dict[str, BatchClient] = {}
"""One SDK client per stack URL, closed with its stack (`close_clients`), so no socket is left to the GC."""


def batch_client(stack: LocalStack) -> BatchClient:
    """The SDK client of the stack, signed with its account key."""
    client = _clients.get(stack.url)
    if client is None:
        credential = AzureNamedKeyCredential(stack.account_name, stack.account_key)
        client = _clients[stack.url] = BatchClient(endpoint=stack.url, credential=credential)
    return client


def close_clients(stack: LocalStack) -> None:
    """Close the stack's SDK client, if one was made."""
    client = _clients.pop(stack.url, None)
    if client is not None:
        client.close()


def until(what: str, check: Callable[[], bool], timeout: float = TIMEOUT_SECONDS) -> None:
    """Poll `check` until it holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def completed(client: BatchClient, job_id: str, task_id: str) -> models.BatchTask:
    """The task once it has completed."""
    until(f"task {job_id}/{task_id} to complete", lambda: client.get_task(job_id, task_id).state == "completed")
    return client.get_task(job_id, task_id)
