"""Helpers shared by every test package."""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_service(name: str, reachable: bool, detail: str = "") -> None:
    """Skip the test when a backing service (PostgreSQL, Redis…) is unreachable — but fail it in CI
    (``CI=true``), where a missing service is a broken pipeline, not a reason to test less."""
    if reachable:
        return
    reason = f"{name} is not reachable" + (f": {detail}" if detail else "")
    if in_ci():
        pytest.fail(f"{reason} (CI=true: service-backed tests must run)", pytrace=False)
    pytest.skip(reason)


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Something accepts TCP connections there (the machine's PostgreSQL, Redis...)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
