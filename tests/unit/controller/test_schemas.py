"""Request validation: Azure's id rules, case-insensitive enums, path safety."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from controller.api.validation import error_from_validation
from controller.schemas.jobs import JobCreate, Schedule
from controller.schemas.tasks import TaskCreate


def _error_code(model: type[TaskCreate] | type[JobCreate], body: dict[str, object]) -> tuple[str, dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    error = error_from_validation(caught.value)
    return error.code, error.values


def test_enum_values_are_case_insensitive_and_canonical() -> None:
    output = {
        "filePattern": "*.txt",
        "destination": {"container": {"containerUrl": "http://x/c?sig=s"}},
        "uploadOptions": {"uploadCondition": "taskCompletion"},
    }
    task = TaskCreate.model_validate({"id": "t", "commandLine": "x", "outputFiles": [output]})
    assert task.wire()["outputFiles"][0]["uploadOptions"]["uploadCondition"] == "taskcompletion"


@pytest.mark.parametrize("task_id", ["a" * 65, "has space", "dot.ted", "ünï"])
def test_bad_ids_are_invalid_property_values(task_id: str) -> None:
    code, values = _error_code(TaskCreate, {"id": task_id, "commandLine": "x"})
    assert (code, values["PropertyName"]) == ("InvalidPropertyValue", "id")


def test_missing_command_line() -> None:
    code, values = _error_code(TaskCreate, {"id": "t"})
    assert (code, values["PropertyName"]) == ("MissingRequiredProperty", "commandLine")


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b"])
def test_resource_file_paths_must_stay_in_the_working_directory(path: str) -> None:
    body = {"id": "t", "commandLine": "x", "resourceFiles": [{"httpUrl": "http://h/f", "filePath": path}]}
    code, _ = _error_code(TaskCreate, body)
    assert code == "InvalidPropertyValue"


def test_priority_out_of_range() -> None:
    code, _ = _error_code(JobCreate, {"id": "j", "poolInfo": {"poolId": "p"}, "priority": 1001})
    assert code == "OutOfRangePriority"


def test_rendered_task_never_shows_a_sas_signature() -> None:
    from controller import render

    body = {
        "id": "t",
        "commandLine": "x",
        "resourceFiles": [{"httpUrl": "http://h/c/b?sp=r&sig=SECRET1", "filePath": "b"}],
        "outputFiles": [
            {
                "filePattern": "*",
                "destination": {"container": {"containerUrl": "http://h/c?sp=w&sig=SECRET2"}},
                "uploadOptions": {"uploadCondition": "taskcompletion"},
            }
        ],
    }
    stamp = "2026-01-01T00:00:00.000000Z"
    record = {"id": "t", "job": "j", "spec": json.dumps(TaskCreate.model_validate(body).wire())}
    record.update({"etag": "0x1", "modified": stamp, "created": stamp, "state": "active", "stt": stamp})
    rendered = str(render.task(record, "http://endpoint"))
    assert "SECRET" not in rendered
    assert "sig=REDACTED" in rendered


@pytest.mark.parametrize("name", ["recurrenceInterval", "startWindow"])
def test_schedule_durations_are_at_least_a_minute(name: str) -> None:
    assert Schedule.model_validate({name: "PT1M"}).wire() == {name: "PT1M"}
    with pytest.raises(ValidationError) as caught:
        Schedule.model_validate({name: "PT59S"})
    assert error_from_validation(caught.value).code == "InvalidPropertyValue"
