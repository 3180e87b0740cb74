"""Application packages: uploaded with `batchyard package add`, listed by the API, unpacked on the node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from tests.support.batch import batch_client
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


def _package(tmp_path: Path, greeting: str) -> Path:
    archive = tmp_path / f"{greeting}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("bin/greet.sh", f"#!/bin/sh\necho {greeting}\n")
    return archive


def _add(stack: LocalStack, app: str, version: str, archive: Path, default: bool) -> None:
    argv = [sys.executable, "-m", "batchyard.cli", "package", "add", app, version, str(archive)]
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": stack.connection_string}
    run = subprocess.run(
        [*argv, *(["--default"] if default else [])], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr


def test_packages_are_listed_and_unpacked_with_their_environment(shared_stack: LocalStack, tmp_path: Path) -> None:
    # Given two versions of an application, the second one the default
    _add(shared_stack, "greeter", "1.0", _package(tmp_path, "hello-one"), default=False)
    _add(shared_stack, "greeter", "2.0", _package(tmp_path, "hello-two"), default=True)
    client = batch_client(shared_stack)
    # Then the API lists both versions
    assert sorted(client.get_application("greeter").versions) == ["1.0", "2.0"]
    assert "greeter" in {app.id for app in client.list_applications()}
    # When a task references version 1.0 and another the default
    client.create_job(models.BatchJobCreateOptions(id="packages", pool_info=models.BatchPoolInfo(pool_id="local")))
    pinned = models.BatchApplicationPackageReference(application_id="greeter", version="1.0")
    default = models.BatchApplicationPackageReference(application_id="greeter")
    for task_id, reference, variable in (
        ("pinned", pinned, "AZ_BATCH_APP_PACKAGE_greeter_1_0"),
        ("default", default, "AZ_BATCH_APP_PACKAGE_greeter"),
    ):
        command = f"/bin/sh -c '/bin/sh ${variable}/bin/greet.sh'"
        options = models.BatchTaskCreateOptions(
            id=task_id, command_line=command, application_package_references=[reference]
        )
        client.create_task("packages", options)
    # Then each ran the script from its own unpacked version
    for task_id, expected in (("pinned", b"hello-one\n"), ("default", b"hello-two\n")):
        deadline = time.monotonic() + 60
        while client.get_task("packages", task_id).state != models.BatchTaskState.COMPLETED:
            assert time.monotonic() < deadline, f"{task_id} did not complete"
            time.sleep(0.2)
        assert b"".join(client.download_task_file("packages", task_id, "stdout.txt")) == expected


def test_unknown_package_reference_is_refused(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    client.create_job(models.BatchJobCreateOptions(id="nopackage", pool_info=models.BatchPoolInfo(pool_id="local")))
    reference = models.BatchApplicationPackageReference(application_id="no-such-app", version="9")
    options = models.BatchTaskCreateOptions(
        id="t", command_line="/bin/true", application_package_references=[reference]
    )
    with pytest.raises(HttpResponseError) as caught:
        client.create_task("nopackage", options)
    assert (caught.value.status_code, caught.value.error.code) == (409, "InvalidApplicationPackageReferences")
    with pytest.raises(HttpResponseError) as missing:
        client.get_application("no-such-app")
    assert missing.value.status_code == 404
