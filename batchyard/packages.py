"""`batchyard package add`: upload an application package version to the account's auto-storage.

Packages live in the auto-storage container `applications` as
`<applicationId>/<version>.zip`; the controller lists that container for
`GET /applications` and hands nodes read SAS URLs of the zips.
"""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from controller.domain.ids import id_problem
from controller.storage import AZURITE_COMPATIBLE_API_VERSION, DEFAULT_MARKER

CONTAINER = "applications"
"""The auto-storage container the controller reads packages from (CONTROLLER_APPLICATIONS_CONTAINER)."""


class PackageError(Exception):
    """The package cannot be uploaded as given."""


def upload(connection_string: str, application_id: str, version: str, archive: Path, default: bool) -> str:
    """Upload `archive` as a version of `application_id`; returns the blob name."""
    _check(application_id, version, archive)
    service = BlobServiceClient.from_connection_string(connection_string, api_version=AZURITE_COMPATIBLE_API_VERSION)
    container = service.get_container_client(CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    if default:
        _clear_default(service, application_id)
    name = f"{application_id}/{version}.zip"
    with archive.open("rb") as data:
        metadata = {DEFAULT_MARKER: "true"} if default else {}
        container.upload_blob(name, data, overwrite=True, metadata=metadata)
    return name


def _check(application_id: str, version: str, archive: Path) -> None:
    for what, value in (("application id", application_id), ("version", version.replace(".", "_"))):
        problem = id_problem(value)
        if problem:
            raise PackageError(f"invalid {what} {value!r}: {problem}")
    if not zipfile.is_zipfile(archive):
        raise PackageError(f"{archive} is not a zip archive")


def _clear_default(service: BlobServiceClient, application_id: str) -> None:
    """Unmark the application's current default version, so exactly one is the default."""
    container = service.get_container_client(CONTAINER)
    for blob in container.list_blobs(name_starts_with=f"{application_id}/", include=["metadata"]):
        if (blob.metadata or {}).get(DEFAULT_MARKER) == "true":
            container.get_blob_client(blob.name).set_blob_metadata({})
