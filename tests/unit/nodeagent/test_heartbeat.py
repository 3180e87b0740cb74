from __future__ import annotations

import threading

from nodeagent.errors import ControllerUnavailable
from nodeagent.heartbeat import Heartbeat
from nodeagent.messages import HeartbeatAnswer, NodeHeartbeat

BEAT = NodeHeartbeat(node_id="n", pool_id="p", task_slots=1, file_server_url="http://h:1")


def test_stale_attempts_are_handed_over() -> None:
    stale: list[list[str]] = []
    heartbeat = Heartbeat(lambda beat: HeartbeatAnswer(stale_attempts=["a1"]), lambda: BEAT, stale.append, 1.0)
    assert heartbeat.beat()
    assert stale == [["a1"]]


def test_unanswered_heartbeat_is_reported_not_raised() -> None:
    def send(beat: NodeHeartbeat) -> HeartbeatAnswer:
        raise ControllerUnavailable("down")

    assert not Heartbeat(send, lambda: BEAT, lambda ids: None, 1.0).beat()


def test_loop_beats_until_stopped() -> None:
    sent = threading.Semaphore(0)

    def send(beat: NodeHeartbeat) -> HeartbeatAnswer:
        sent.release()
        return HeartbeatAnswer()

    heartbeat = Heartbeat(send, lambda: BEAT, lambda ids: None, 0.01)
    heartbeat.start()
    assert sent.acquire(timeout=2) and sent.acquire(timeout=2)
    heartbeat.stop()


def test_the_whole_answer_is_handed_over() -> None:
    answers: list[HeartbeatAnswer] = []
    answer = HeartbeatAnswer(lease_seconds=12.5)
    heartbeat = Heartbeat(lambda beat: answer, lambda: BEAT, lambda ids: None, 1.0, on_answer=answers.append)
    assert heartbeat.beat()
    assert answers == [answer]
