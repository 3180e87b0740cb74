"""The account's auto-storage: read SAS URLs for nodes and the application package catalogue.

The only controller module that imports azure.storage.blob. Nodes never get the
storage account key, only short-lived read SAS URLs made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

AZURITE_COMPATIBLE_API_VERSION = "2025-11-05"
"""A storage API version both Azure and Azurite 3.35 accept."""

DEFAULT_MARKER = "batchyard_default"
"""Blob metadata key marking a package version as its application's default."""


@dataclass(frozen=True)
class PackageVersion:
    """One uploaded application package version."""

    application_id: str
    version: str
    blob_name: str
    is_default: bool


class AutoStorage:
    """Read access to the auto-storage account, for URLs handed to nodes."""

    def __init__(self, connection_string: str, packages_container: str, sas_lifetime: timedelta) -> None:
        self.configured = bool(connection_string)
        self.packages_container = packages_container
        self.sas_lifetime = sas_lifetime
        self._service = (
            BlobServiceClient.from_connection_string(connection_string, api_version=AZURITE_COMPATIBLE_API_VERSION)
            if connection_string
            else None
        )

    def _client(self) -> BlobServiceClient:
        if self._service is None:
            raise LookupError("no auto-storage account is configured")
        return self._service

    def _key(self) -> str:
        return str(self._client().credential.account_key)

    def container_read_url(self, container: str) -> str:
        """The container's URL with a read+list SAS."""
        client = self._client()
        sas = generate_container_sas(
            account_name=client.account_name or "",
            container_name=container,
            account_key=self._key(),
            permission=ContainerSasPermissions(read=True, list=True),
            expiry=datetime.now(UTC) + self.sas_lifetime,
        )
        return f"{client.url.rstrip('/')}/{container}?{sas}"

    def blob_read_url(self, container: str, blob: str) -> str:
        """One blob's URL with a read SAS."""
        client = self._client()
        sas = generate_blob_sas(
            account_name=client.account_name or "",
            container_name=container,
            blob_name=blob,
            account_key=self._key(),
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + self.sas_lifetime,
        )
        return f"{client.url.rstrip('/')}/{container}/{blob}?{sas}"

    def package_versions(self) -> list[PackageVersion]:
        """Every `<applicationId>/<version>.zip` in the packages container (empty when there is none)."""
        if self._service is None:
            return []
        container = self._service.get_container_client(self.packages_container)
        try:
            blobs = list(container.list_blobs(include=["metadata"]))
        except ResourceNotFoundError:
            return []
        except AzureError as error:
            raise ConnectionError(f"auto-storage did not answer: {type(error).__name__}") from None
        return [version for blob in blobs if (version := _package_version(blob.name, blob.metadata or {}))]

    def package_url(self, version: PackageVersion) -> str:
        """A read SAS URL of one package version's zip."""
        return self.blob_read_url(self.packages_container, version.blob_name)


def _package_version(name: str, metadata: dict[str, str]) -> PackageVersion | None:
    application_id, _, file_name = name.partition("/")
    if not application_id or "/" in file_name or not file_name.lower().endswith(".zip"):
        return None
    is_default = metadata.get(DEFAULT_MARKER, "").lower() == "true"
    return PackageVersion(application_id, file_name[: -len(".zip")], name, is_default)
