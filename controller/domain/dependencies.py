"""Task dependencies as the store resolves them: each parent is a name a completed task settles. Pure functions.

A `taskIds` entry names one task by its key (ids are case-insensitive). A `taskIdRanges` entry names
every integer in the range as `#n`; a task whose id is an integer (leading zeros ignored, so `4`,
`04` and `004` are all 4) settles `#n` as well as its own key when it completes. Resolution costs one
set operation per edge: a dependent joins the set of each name it waits for, and a completing task
walks only the set of its own names.
"""

from __future__ import annotations

from typing import Any

from controller.domain.ids import key_of
from controller.errors import BatchError, invalid_property

MAX_ID_LIST_CHARS = 64_000
"""Longest combined length of a task's `taskIds`."""

MAX_RANGE_IDS = 64_000
"""Most task ids a task's `taskIdRanges` may cover together."""


def number_name(number: int) -> str:
    """The dependency name of integer task id `number`."""
    return f"#{number}"


def integer_id(task_id: str) -> int | None:
    """The integer an id stands for in `taskIdRanges`, or None when it is not all digits."""
    return int(task_id) if task_id.isascii() and task_id.isdigit() else None


def dependency_names(depends_on: dict[str, Any]) -> list[str]:
    """The distinct names a task with this `dependsOn` waits for, in order."""
    names = [key_of(task_id) for task_id in depends_on.get("taskIds") or []]
    for id_range in depends_on.get("taskIdRanges") or []:
        names += [number_name(number) for number in range(id_range["start"], id_range["end"] + 1)]
    return list(dict.fromkeys(names))


def check_dependencies(depends_on: dict[str, Any]) -> BatchError | None:
    """The 400 a `dependsOn` gets: a list or ranges too long, or a range that ends before it starts."""
    if sum(len(task_id) for task_id in depends_on.get("taskIds") or []) > MAX_ID_LIST_CHARS:
        message = f"The taskIds of dependsOn are longer than {MAX_ID_LIST_CHARS} characters together"
        return BatchError(message, code="TaskDependencyListTooLong")
    ranges = depends_on.get("taskIdRanges") or []
    for id_range in ranges:
        if id_range["end"] < id_range["start"] or id_range["start"] < 0:
            return invalid_property("dependsOn.taskIdRanges", "a range must satisfy 0 <= start <= end")
    if sum(id_range["end"] - id_range["start"] + 1 for id_range in ranges) > MAX_RANGE_IDS:
        message = f"The taskIdRanges of dependsOn cover more than {MAX_RANGE_IDS} task ids together"
        return BatchError(message, code="TaskDependencyRangesTooLong")
    return None
