from __future__ import annotations

from controller.dispatch import by_node
from nodeagent.messages import Dispatch, Offer


def offer(attempt_id: str) -> Offer:
    return Offer(attempt_id=attempt_id, job_id="j", task_id=attempt_id)


def test_offers_to_one_node_travel_in_one_message_in_their_order() -> None:
    dispatches = [
        Dispatch(node_id="n1", offers=[offer("a")]),
        Dispatch(node_id="n2", offers=[offer("b")]),
        Dispatch(node_id="n1", offers=[offer("c"), offer("d")]),
    ]
    merged = by_node(dispatches)
    assert [(d.node_id, [o.attempt_id for o in d.offers]) for d in merged] == [("n1", ["a", "c", "d"]), ("n2", ["b"])]
