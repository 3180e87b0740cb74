"""The raw Celery baselines the benchmarks compare Batchyard with: tasks that run `/bin/true`.

`bench.run_true` only runs it; `bench.run_true_isolated` first does what a node agent does
around every command (`isolation.run_isolated`: task directory, task user, cgroups). Worker
processes load this module with `celery -A rawcelery worker` (the broker URL and the isolated
tasks' directory come from the environment); the benchmark itself sends with `make_app(url)`.
Each task records (sent, started, ended) wall-clock times in a Redis list on the broker's
Redis, which is also how the sender learns that every task has finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from celery import Celery
from common import stop_process
from isolation import run_isolated

BROKER_ENV = "BATCHYARD_BENCH_BROKER_URL"
"""Environment variable carrying the broker URL to the worker processes."""

ROOT_ENV = "BATCHYARD_BENCH_TASK_ROOT"
"""Environment variable carrying the isolated tasks' directory to the worker processes."""

TASK_NAME = "bench.run_true"
ISOLATED_TASK_NAME = "bench.run_true_isolated"
QUEUE = "bench.raw"
DONE_KEY = "bench:raw:done"
"""List of JSON [sent, started, ended] triples, one per finished task."""

_local = threading.local()


def make_app(broker_url: str) -> Celery:
    """A Celery app: JSON only, late acks, prefetch 1, no result backend (the done list is the result)."""
    app = Celery("rawcelery", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_ignore_result=True,
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:1/0"))


def _redis() -> redis.Redis:
    client: redis.Redis | None = getattr(_local, "client", None)
    if client is None:
        client = redis.Redis.from_url(os.environ[BROKER_ENV])
        _local.client = client
    return client


@app.task(name=TASK_NAME)
def run_true(sent: float) -> None:
    """Run `/bin/true` and record when the task was sent, started and ended."""
    started = time.time()
    subprocess.run(["/bin/true"], check=True)
    ended = time.time()
    _redis().rpush(DONE_KEY, json.dumps([sent, started, ended]))


@app.task(name=ISOLATED_TASK_NAME)
def run_true_isolated(sent: float, index: int) -> None:
    """Run `/bin/true` as a node agent would, and record when the task was sent, started and ended."""
    started = time.time()
    if run_isolated(Path(os.environ[ROOT_ENV]), index) != 0:
        raise RuntimeError("/bin/true failed")
    ended = time.time()
    _redis().rpush(DONE_KEY, json.dumps([sent, started, ended]))


def start_workers(
    broker_url: str, count: int, concurrency: int, log_dir: Path, task_root: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start `count` thread-pool workers of this app and wait until all of them answer a ping."""
    env = {**os.environ, BROKER_ENV: broker_url, ROOT_ENV: str(task_root or "")}
    workers = []
    for index in range(count):
        argv = [sys.executable, "-m", "celery", "-A", "rawcelery", "worker", "--pool", "threads",
                "--concurrency", str(concurrency), "-n", f"raw{index}@%h", "-Q", QUEUE, "--without-gossip",
                "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]  # fmt: skip
        log = (log_dir / f"raw-worker-{index}.log").open("wb")
        workers.append(subprocess.Popen(argv, cwd=Path(__file__).parent, env=env, stdout=log, stderr=subprocess.STDOUT))
    sender = make_app(broker_url)
    deadline = time.monotonic() + 60
    while len(sender.control.ping(timeout=0.5) or []) < count:
        if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
            stop_workers(workers)
            raise SystemExit(f"raw Celery workers did not start; see {log_dir}/raw-worker-*.log")
    sender.close()
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """Warm-shut down each worker we started, by PID."""
    for worker in workers:
        stop_process(worker)


def send_and_wait(
    broker_url: str, total: int, timeout: float = 600, *, isolated: bool = False
) -> list[tuple[float, float, float]]:
    """Send `total` tasks over one producer, wait until all have recorded their times, and return them."""
    client = redis.Redis.from_url(broker_url)
    client.delete(DONE_KEY)
    sender = make_app(broker_url)
    with sender.producer_or_acquire() as producer:
        for index in range(total):
            if isolated:
                sender.send_task(ISOLATED_TASK_NAME, args=[time.time(), index], queue=QUEUE, producer=producer)
            else:
                sender.send_task(TASK_NAME, args=[time.time()], queue=QUEUE, producer=producer)
    deadline = time.monotonic() + timeout
    while int(client.llen(DONE_KEY)) < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"raw Celery: only {client.llen(DONE_KEY)} of {total} tasks finished")
        time.sleep(0.05)
    raw: list[bytes | str] = client.lrange(DONE_KEY, 0, -1)
    client.close()
    sender.close()
    return [(float(a), float(b), float(c)) for a, b, c in (json.loads(item) for item in raw)]
