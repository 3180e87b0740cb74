"""A network namespace joined to the host by a veth pair, for partition tests; removed again even on failure.

The pair gets a /30 of 10.250.0.0/16 that no interface of the host uses yet: `host_ip` on the host end,
`ns_ip` inside the namespace. `partition()` takes the host end down, `heal()` brings it back up.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SUBNETS = ipaddress.ip_network("10.250.0.0/16")
"""Where the pair's /30 is taken from."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip` with `args`."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def used_networks() -> set[ipaddress.IPv4Network]:
    """The IPv4 networks of every address on the host."""
    found = set()
    for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.add(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    return found


def free_subnet() -> ipaddress.IPv4Network:
    """A /30 of SUBNETS that overlaps no network in use on the host."""
    used = used_networks()
    start = os.getpid() % 16000
    candidates = list(SUBNETS.subnets(new_prefix=30))
    for index in range(len(candidates)):
        subnet = candidates[(start + index) % len(candidates)]
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise RuntimeError("no free /30 in 10.250.0.0/16")


def require_netns() -> None:
    """Skip unless this process can create network namespaces (root and `ip`)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")


@dataclass(frozen=True)
class Namespace:
    """One namespace and its veth pair."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def partition(self) -> None:
        """Cut the namespace off: the host end of the pair goes down."""
        ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        """Join the namespace again."""
        ip("link", "set", self.host_if, "up")


def _create(ns: Namespace, prefix: int) -> None:
    """Create the namespace and the pair, address both ends and bring them up."""
    ip("netns", "add", ns.name)
    ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
    ip("link", "set", ns.ns_if, "netns", ns.name)
    ip("addr", "add", f"{ns.host_ip}/{prefix}", "dev", ns.host_if)
    ip("link", "set", ns.host_if, "up")
    inside = ["netns", "exec", ns.name, "ip"]
    ip(*inside, "addr", "add", f"{ns.ns_ip}/{prefix}", "dev", ns.ns_if)
    ip(*inside, "link", "set", ns.ns_if, "up")
    ip(*inside, "link", "set", "lo", "up")


def _remove(ns: Namespace) -> None:
    """Delete the pair and the namespace (either may be gone already)."""
    ip("link", "del", ns.host_if, check=False)
    ip("netns", "del", ns.name, check=False)


@contextlib.contextmanager
def namespace(tag: str) -> Iterator[Namespace]:
    """A fresh namespace named after `tag` and this process, with its veth pair; always removed."""
    require_netns()
    subnet = free_subnet()
    host_ip, ns_ip = (str(address) for address in subnet.hosts())
    suffix = f"{os.getpid() % 100000}{tag}"[-9:]
    ns = Namespace(f"byf-{suffix}", f"byh{suffix}", f"byn{suffix}", host_ip, ns_ip)
    try:
        _create(ns, subnet.prefixlen)
        yield ns
    finally:
        _remove(ns)
