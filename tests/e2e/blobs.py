"""Blob helpers for end-to-end tests: containers and SAS URLs in the stack's Azurite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)

AZURITE_API_VERSION = "2025-11-05"


def service(connection_string: str) -> BlobServiceClient:
    """A blob client for Azurite, pinned to an API version Azurite 3.35 knows."""
    return BlobServiceClient.from_connection_string(connection_string, api_version=AZURITE_API_VERSION)


def writable_container(connection_string: str) -> tuple[str, str]:
    """Create a fresh container; returns (name, container URL with a write SAS)."""
    name = f"out-{uuid.uuid4().hex[:12]}"
    with service(connection_string) as blobs:
        blobs.create_container(name)
        sas = generate_container_sas(
            account_name=blobs.account_name or "",
            container_name=name,
            account_key=blobs.credential.account_key,
            permission=ContainerSasPermissions(read=True, write=True, create=True, add=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return name, f"{blobs.url.rstrip('/')}/{name}?{sas}"


def read_blob(connection_string: str, container: str, name: str) -> bytes:
    """The content of one blob."""
    with service(connection_string) as blobs:
        return blobs.get_blob_client(container, name).download_blob().readall()


def readable_blob_url(connection_string: str, container: str, name: str, data: bytes) -> str:
    """Upload `data` as a blob; returns its URL with a read SAS."""
    with service(connection_string) as blobs:
        blobs.get_container_client(container).upload_blob(name, data, overwrite=True)
        sas = generate_blob_sas(
            account_name=blobs.account_name or "",
            container_name=container,
            blob_name=name,
            account_key=blobs.credential.account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return f"{blobs.url.rstrip('/')}/{container}/{name}?{sas}"
