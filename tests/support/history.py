"""What fault tests record while tasks run, and the invariants they check at the end (I1-I3 of the scorecard).

Each task command records its own start and end: `recorded_command` writes `<task>.<pid>.start` and, if
it is not killed, `<task>.<pid>.end` (Unix times) into a shared directory. A `ProcessWatch` thread samples
the processes carrying the run's marker variable (every task of a run gets it through its environment
settings, so children and grandchildren carry it too) and remembers, per task and session (one session
per attempt), when it was last seen alive; it also holds a pidfd on each session leader and notes the
moment it exits (polled every POLL_SECONDS). That is the end of an attempt that was killed, known
within one poll: the watch notes too when the leader was last certainly alive (the start of a poll
that found it running), and two executions overlap only when the second started before that.
"""

from __future__ import annotations

import os
import select
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from batchyard.client import BatchClient

MARKER_VARIABLE = "BYFAULT_RUN"
"""Environment setting every task of a fault run carries."""

SAMPLE_SECONDS = 0.2
"""How often the watch samples processes."""

POLL_SECONDS = 0.02
"""How often the watch checks whether a known session leader exited."""


def new_marker() -> str:
    """A marker value unique to one test run."""
    return f"byfault-{uuid.uuid4().hex[:12]}"


def events_dir(base: Path) -> Path:
    """A directory every task user can write its start/end files into."""
    path = base / "events"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o1777)
    return path


def recorded_command(events: Path, seconds: float, then: str = "") -> str:
    """A command line that records its start, sleeps, runs `then` (shell text, no single quotes), records its end."""
    stem = f"{events}/$AZ_BATCH_TASK_ID.$$"
    script = f"date +%s.%N > {stem}.start; sleep {seconds}; {then} date +%s.%N > {stem}.end"
    return f"/bin/sh -c '{script}'"


def released_command(events: Path) -> str:
    """A command line that records its start, waits until `release` lets its task go, and records its end."""
    stem = f"{events}/$AZ_BATCH_TASK_ID.$$"
    wait = f"while [ ! -e {events}/go-$AZ_BATCH_TASK_ID ]; do sleep 0.1; done"
    return f"/bin/sh -c 'date +%s.%N > {stem}.start; {wait}; date +%s.%N > {stem}.end'"


def release(events: Path, task_id: str) -> None:
    """Let every execution of a `released_command` task finish (those to come finish at once)."""
    (events / f"go-{task_id}").touch()


def task_body(task_id: str, command: str, marker: str, **extra: Any) -> dict[str, Any]:
    """An Add Task body whose processes carry `marker`."""
    return {
        "id": task_id,
        "commandLine": command,
        "environmentSettings": [{"name": MARKER_VARIABLE, "value": marker}],
        **extra,
    }


@dataclass
class Execution:
    """One run of a task's command: its pid (= session), start, and the latest moment it certainly ran."""

    task_id: str
    pid: int
    start: float
    finished: bool
    """True when the command got to record its end (it was not killed)."""
    alive_until: float | None
    """Its recorded end; for a killed run the last moment the watch saw it running (None: never seen)."""


@dataclass
class ProcessWatch:
    """Samples the processes of one marker in a thread, and times leader exits in another; see the module docstring."""

    marker: str
    last_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    ended: dict[tuple[str, int], float] = field(default_factory=dict)
    """When each session leader was seen to exit."""
    running_at: dict[tuple[str, int], float] = field(default_factory=dict)
    """When each watched session leader was last certainly running (a poll that began then found it so)."""
    concurrent: list[str] = field(default_factory=list)
    """Descriptions of samples in which one task had processes in two sessions."""
    _leaders: dict[tuple[str, int], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> ProcessWatch:
        for target, name in ((self._sample_loop, "process-sampler"), (self._exit_loop, "leader-exits")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        with self._lock:
            for fd in self._leaders.values():
                os.close(fd)
            self._leaders.clear()

    def alive(self) -> dict[tuple[str, int], list[int]]:
        """The marked processes alive now, by (task id, session id)."""
        found: dict[tuple[str, int], list[int]] = {}
        for process in psutil.process_iter():
            try:
                env = process.environ()
                if env.get(MARKER_VARIABLE) != self.marker or process.status() == psutil.STATUS_ZOMBIE:
                    continue
                key = (env.get("AZ_BATCH_TASK_ID", "?"), os.getsid(process.pid))
            except (psutil.Error, OSError):
                continue
            found.setdefault(key, []).append(process.pid)
        return found

    def sample(self) -> None:
        """Record one sample, and start timing the exits of new session leaders."""
        now = time.time()
        alive = self.alive()
        sessions: dict[str, list[int]] = {}
        for (task_id, session), pids in alive.items():
            self.last_seen[(task_id, session)] = now
            sessions.setdefault(task_id, []).append(session)
            if session in pids:
                self._watch_leader((task_id, session))
        for task_id, found in sessions.items():
            if len(found) > 1:
                self.concurrent.append(f"{now:.2f}: task {task_id} runs in sessions {sorted(found)}")

    def _watch_leader(self, key: tuple[str, int]) -> None:
        """Hold a pidfd on a session leader not watched yet."""
        with self._lock:
            if key in self._leaders or key in self.ended:
                return
            try:
                self._leaders[key] = os.pidfd_open(key[1])
            except OSError:
                self.ended[key] = time.time()

    def _exits(self) -> None:
        """Wait up to one poll interval for watched leaders to exit, and note when they did."""
        with self._lock:
            watched = dict(self._leaders)
        poller = select.poll()
        for fd in watched.values():
            poller.register(fd, select.POLLIN)
        began = time.time()
        ready = {fd for fd, _ in poller.poll(POLL_SECONDS * 1000)}
        if not watched:
            time.sleep(POLL_SECONDS)
        now = time.time()
        with self._lock:
            for key, fd in watched.items():
                if fd not in ready:
                    self.running_at[key] = began
                elif self._leaders.get(key) == fd:
                    self.ended[key] = now
                    os.close(self._leaders.pop(key))

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def _exit_loop(self) -> None:
        while not self._stop.is_set():
            self._exits()


def executions(events: Path, watch: ProcessWatch) -> dict[str, list[Execution]]:
    """Every recorded execution by task id, oldest first."""
    found: dict[str, list[Execution]] = {}
    for start_file in sorted(events.glob("*.start")):
        task_id, pid_text = start_file.name[: -len(".start")].rsplit(".", 1)
        pid = int(pid_text)
        end_file = start_file.with_suffix(".end")
        finished = end_file.exists()
        start = float(start_file.read_text())
        alive_until = float(end_file.read_text()) if finished else _alive_until(watch, (task_id, pid))
        found.setdefault(task_id, []).append(Execution(task_id, pid, start, finished, alive_until))
    for runs in found.values():
        runs.sort(key=lambda run: run.start)
    return found


def _alive_until(watch: ProcessWatch, key: tuple[str, int]) -> float | None:
    """The latest moment a killed execution was certainly running: a sample saw it, or a poll found it."""
    known = [moment for moment in (watch.last_seen.get(key), watch.running_at.get(key)) if moment is not None]
    return max(known, default=None)


def overlaps(runs: list[Execution]) -> list[str]:
    """Descriptions of executions of one task that ran at the same time, or may have (an unknown end)."""
    problems = []
    for before, after in zip(runs, runs[1:], strict=False):
        if before.alive_until is None:
            problems.append(f"{before.task_id}: pid {before.pid} was killed unseen, so when it ended is unknown")
            continue
        if after.start < before.alive_until:
            problems.append(
                f"{before.task_id}: pid {after.pid} started {before.alive_until - after.start:.2f} s"
                f" before {before.pid} was last seen running"
            )
    return problems


def wait_tasks(client: BatchClient, job_id: str, task_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Wait until every task is completed; the tasks as the API shows them (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    tasks: dict[str, dict[str, Any]] = {}
    while True:
        tasks = {task_id: get_task(client, job_id, task_id) for task_id in task_ids}
        if all(task["state"] == "completed" for task in tasks.values()):
            return tasks
        if time.monotonic() > deadline:
            states = {task_id: task["state"] for task_id, task in tasks.items()}
            raise AssertionError(f"tasks not completed after {timeout:.0f} s: {states}")
        time.sleep(0.3)


RETRIED_STATUSES = frozenset({500, 502, 503, 504})
"""Answers a client retries, as the Azure SDKs do (the controller may answer 500 while its store restarts)."""


def get_task(client: BatchClient, job_id: str, task_id: str, tries: int = 10) -> dict[str, Any]:
    """One task as the API shows it, retrying server errors a few times as the SDKs do."""
    response = client.get(f"/jobs/{job_id}/tasks/{task_id}")
    for _ in range(tries - 1):
        if response.status_code not in RETRIED_STATUSES:
            break
        time.sleep(0.5)
        response = client.get(f"/jobs/{job_id}/tasks/{task_id}")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def wait_state(client: BatchClient, job_id: str, task_id: str, state: str, timeout: float) -> dict[str, Any]:
    """Wait until the task is in `state`; the task."""
    deadline = time.monotonic() + timeout
    while True:
        task = get_task(client, job_id, task_id)
        if task["state"] == state:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} is {task['state']}, not {state}, after {timeout:.0f} s")
        time.sleep(0.2)


def wait_started(events: Path, task_id: str, count: int, timeout: float) -> list[Path]:
    """Wait until `count` executions of the task recorded their start; their start files."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(events.glob(f"{task_id}.*.start"))
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id}: {len(found)} of {count} executions started after {timeout:.0f} s")
        time.sleep(0.1)


def add_job(client: BatchClient, job_id: str, pool_id: str) -> None:
    """Create a job on the pool."""
    response = client.post("/jobs", {"id": job_id, "poolInfo": {"poolId": pool_id}})
    assert response.status_code == 201, response.text


def add_tasks(client: BatchClient, job_id: str, bodies: list[dict[str, Any]]) -> None:
    """Add tasks (one collection call)."""
    response = client.post(f"/jobs/{job_id}/addtaskcollection", {"value": bodies})
    assert response.status_code == 200, response.text
    results = response.json()["value"]
    assert all(result["status"] == "success" for result in results), results


def execution_info(task: dict[str, Any]) -> dict[str, Any]:
    """The task's executionInfo (empty when absent)."""
    info: dict[str, Any] = task.get("executionInfo") or {}
    return info


@dataclass
class Checked:
    """What `check_invariants` found: executions per task."""

    runs: dict[str, list[Execution]]

    def finished(self, task_id: str) -> int:
        """How many executions of the task ran to their end."""
        return sum(run.finished for run in self.runs.get(task_id, []))

    def started(self, task_id: str) -> int:
        """How many executions of the task started."""
        return len(self.runs.get(task_id, []))


def check_invariants(tasks: dict[str, dict[str, Any]], events: Path, watch: ProcessWatch) -> Checked:
    """I1 (every task completed), I2 (no two executions of a task at once), no marked process left; executions."""
    incomplete = {task_id: task["state"] for task_id, task in tasks.items() if task["state"] != "completed"}
    assert not incomplete, f"I1: tasks not completed: {incomplete}"
    watch.sample()
    assert not watch.concurrent, f"I2: concurrent executions: {watch.concurrent}"
    runs = executions(events, watch)
    problems = [problem for task_runs in runs.values() for problem in overlaps(task_runs)]
    assert not problems, f"I2: overlapping executions: {problems}"
    left = watch.alive()
    assert not left, f"processes of finished tasks still alive: {left}"
    return Checked(runs)
