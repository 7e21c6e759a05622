"""Loopback networking helpers shared by the tests and ``benchmarks/`` (which put the repository root on
``sys.path`` and import from ``tests``)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
