"""Placement of queued tasks on free slots."""

from __future__ import annotations

from controller.domain.placement import Want, place, place_gang


def test_spread_balances_across_nodes() -> None:
    placed, left = place([Want(f"t{i}", 1) for i in range(4)], {"n1": 4, "n2": 4})
    assert [node for _, node in placed] == ["n1", "n2", "n1", "n2"]
    assert left == {"n1": 2, "n2": 2}


def test_pack_fills_one_node_first() -> None:
    placed, _ = place([Want(f"t{i}", 1) for i in range(3)], {"n1": 4, "n2": 4}, "pack")
    assert {node for _, node in placed} == {"n1"}


def test_a_task_never_lands_without_enough_slots() -> None:
    placed, left = place([Want("big", 3), Want("small", 1)], {"n1": 2})
    assert [(want.task_key, node) for want, node in placed] == [("small", "n1")]
    assert left == {"n1": 1}


def test_affinity_is_honoured_when_the_node_has_room() -> None:
    placed, _ = place([Want("t", 1, affinity="n2")], {"n1": 4, "n2": 1})
    assert [node for _, node in placed] == ["n2"]


def test_affinity_is_only_a_hint() -> None:
    placed, _ = place([Want("t", 2, affinity="n2")], {"n1": 4, "n2": 1})
    assert [node for _, node in placed] == ["n1"]


def test_a_whole_node_task_takes_only_an_idle_node_and_all_of_it() -> None:
    free = {"busy": 3, "idle": 4}
    totals = {"busy": 4, "idle": 4}
    wants = [Want("manager", 1, whole_node=True), Want("t1", 1), Want("t2", 1)]
    placed, left = place(wants, free, "pack", totals)
    assert ("manager", "idle") in [(want.task_key, node) for want, node in placed]
    assert all(node == "busy" for want, node in placed if want.task_key != "manager")
    assert left == {"busy": 1, "idle": 0}
    nothing, _ = place([Want("manager", 1, whole_node=True)], {"busy": 3}, "spread", {"busy": 4})
    assert nothing == []


def test_a_gang_gets_distinct_nodes_all_or_nothing() -> None:
    assert place_gang(2, {"a": 1, "b": 3, "c": 0}) == ["b", "a"]
    assert place_gang(3, {"a": 1, "b": 3, "c": 0}) is None
