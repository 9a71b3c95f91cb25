"""`--grpc-port` is checked with the other ports before the models load."""

from __future__ import annotations

import socket

import pytest

from fastinfer.config import Settings
from fastinfer.serving.ports import PortUnavailableError, check_ports
from tests.integration.server import free_port


def test_the_grpc_port_must_differ_from_the_others() -> None:
    port = free_port()
    with pytest.raises(PortUnavailableError, match="gRPC ports are the same"):
        check_ports(Settings(port=port, health_port=free_port(), grpc_port=port))


def test_a_taken_grpc_port_fails_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(PortUnavailableError, match="--grpc-port"):
            check_ports(Settings(host="127.0.0.1", port=free_port(), grpc_port=busy))


def test_no_grpc_port_by_default() -> None:
    assert Settings().grpc_port is None
