"""Rendering stored records as Azure JSON."""

from __future__ import annotations

from controller.render import node_counts, shown_node_state


def test_node_counts_count_each_state_under_its_azure_name() -> None:
    counts = node_counts("p", ["idle", "running", "running", "starttaskfailed", "waitingforstarttask", "leavingpool"])
    dedicated = counts["dedicated"]
    assert (counts["poolId"], dedicated["total"], dedicated["running"], dedicated["idle"]) == ("p", 6, 2, 1)
    assert (dedicated["startTaskFailed"], dedicated["waitingForStartTask"], dedicated["leavingPool"]) == (1, 1, 1)
    assert dedicated["offline"] == 0 and counts["lowPriority"]["total"] == 0
    assert sum(value for name, value in dedicated.items() if name != "total") == 6


def test_an_idle_node_shows_running_while_it_has_tasks_and_offline_when_disabled() -> None:
    assert shown_node_state({"state": "idle", "used": "2"}) == "running"
    assert shown_node_state({"state": "idle", "used": "0", "scheduling": "disabled"}) == "offline"
    assert shown_node_state({"state": "idle"}) == "idle"
    assert shown_node_state({"state": "rebooting", "used": "1"}) == "rebooting"
