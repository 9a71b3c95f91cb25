"""Settings that are derived from others."""

from __future__ import annotations

from fastinfer.config import Settings


def test_the_health_process_is_on_by_default_on_the_next_port() -> None:
    assert Settings(port=8000).probe_port == 8001
    assert Settings(port=9000, health_port=7000).probe_port == 7000
    assert Settings(port=0).probe_port == 0  # an ephemeral serving port: an ephemeral one too
    assert Settings(port=65535).probe_port == 65534
    assert Settings(port=8000, health_process=False).probe_port is None
    assert Settings(port=8000, health_port=7000, health_process=False).probe_port is None
