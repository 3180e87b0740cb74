"""Ports are checked by binding before anything is started."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from batchyard.ports import PortInUse, free_port, is_free, require_free


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port with a listening socket on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_free_port_can_be_bound() -> None:
    # When a free port is picked / Then a server could listen on it
    assert is_free(free_port())


def test_listening_port_is_not_free(listening: int) -> None:
    # Given a port somebody listens on / Then it is not free
    assert not is_free(listening)


def test_taken_port_error_names_the_port_and_flag(listening: int) -> None:
    # Given a taken port / When it is required / Then the error names the port and the flag choosing it
    with pytest.raises(PortInUse, match=rf"port {listening} on 127\.0\.0\.1 is already in use.*--port"):
        require_free(listening, "--port")
