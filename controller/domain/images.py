"""The images a Batchyard node offers, as `GET /supportedimages` lists them.

A node runs its commands on the operating system of the machine its agent runs
on; a pool's `virtualMachineConfiguration` is stored and shown, not acted on.
The image below is the one `batchyard up` gives its default pool.
"""

from __future__ import annotations

from typing import Any

HOST_IMAGE: dict[str, Any] = {
    "nodeAgentSKUId": "batchyard.local",
    "imageReference": {"publisher": "batchyard", "offer": "local", "sku": "host", "version": "latest"},
    "osType": "linux",
    "capabilities": [],
    "verificationType": "verified",
}

SUPPORTED_IMAGES: tuple[dict[str, Any], ...] = (HOST_IMAGE,)
