"""Where queued tasks go: a pure function over free slots per node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Want:
    """A queued task, the slots it needs, and the node it would rather run on (a soft hint)."""

    task_key: str
    slots: int
    affinity: str = ""
    whole_node: bool = False
    """The task runs alone on its node (a job manager with runExclusive): it needs and takes every slot."""


def place(
    wants: Iterable[Want], free: Mapping[str, int], fill_type: str = "spread", totals: Mapping[str, int] | None = None
) -> tuple[list[tuple[Want, str]], dict[str, int]]:
    """Assign tasks in order to nodes with room; returns (task, node) pairs and the slots left per node.

    `spread` picks the node with the most free slots, `pack` the one with the fewest that
    still fits; ties go to the lowest node id so placement is deterministic. A task that
    fits nowhere is skipped and later, smaller tasks may still be placed. A task's affinity
    node is taken when it has room, whatever the fill type. A whole-node task fits only a node
    with every slot free (`totals` holds each node's slots) and takes them all.
    """
    left = dict(free)
    placed: list[tuple[Want, str]] = []
    for want in wants:
        if want.whole_node:
            fitting = [node for node, slots in left.items() if slots > 0 and slots == (totals or {}).get(node)]
        else:
            fitting = [node for node, slots in left.items() if slots >= want.slots]
        if not fitting:
            continue
        if want.affinity in fitting:
            node = want.affinity
        elif fill_type == "pack":
            node = min(fitting, key=lambda name: (left[name], name))
        else:
            node = min(fitting, key=lambda name: (-left[name], name))
        left[node] = 0 if want.whole_node else left[node] - want.slots
        placed.append((want, node))
    return placed, left


def place_gang(count: int, free: Mapping[str, int]) -> list[str] | None:
    """`count` distinct nodes with a free slot each for the instances of a multi-instance task, or None.

    All or nothing: a gang that does not fit reserves nothing. The nodes with the most free slots are
    taken first (ties to the lowest id).
    """
    fitting = sorted((node for node, slots in free.items() if slots >= 1), key=lambda name: (-free[name], name))
    return fitting[:count] if len(fitting) >= count else None
