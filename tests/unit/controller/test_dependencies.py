from __future__ import annotations

from controller.domain.dependencies import check_dependencies, dependency_names, integer_id


def test_ids_are_case_insensitive_names_and_ranges_are_numbers() -> None:
    depends_on = {"taskIds": ["Prep", "prep", "B"], "taskIdRanges": [{"start": 1, "end": 3}, {"start": 3, "end": 4}]}
    assert dependency_names(depends_on) == ["prep", "b", "#1", "#2", "#3", "#4"]


def test_integer_ids_ignore_leading_zeros_and_others_are_not_integers() -> None:
    assert [integer_id(task_id) for task_id in ("4", "04", "004", "4a", "-4", "٤")] == [4, 4, 4, None, None, None]


def test_limits_give_their_azure_codes() -> None:
    too_long = {"taskIds": ["x" * 64 for _ in range(1001)]}
    assert (error := check_dependencies(too_long)) is not None and error.code == "TaskDependencyListTooLong"
    too_many = {"taskIdRanges": [{"start": 0, "end": 64_000}]}
    assert (error := check_dependencies(too_many)) is not None and error.code == "TaskDependencyRangesTooLong"
    backwards = {"taskIdRanges": [{"start": 5, "end": 4}]}
    assert (error := check_dependencies(backwards)) is not None and error.code == "InvalidPropertyValue"
    assert check_dependencies({"taskIds": ["a"], "taskIdRanges": [{"start": 1, "end": 63_999}]}) is None
