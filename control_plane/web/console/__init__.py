"""``/console``: the operators' web console (admin or viewer token exchanged for a session cookie).

Each page reads through the same services as ``/v1``; each form posts here and calls the same
service function with the same DTO as the admin API's route, so a bad value gets the API's message.
A viewer's session sees every page without forms, and a write posted anyway is refused (403).
"""

from __future__ import annotations

from control_plane.web.console import customers, network, overview, session  # noqa: F401 (they add the routes)
from control_plane.web.console.core import COOKIE, PATH, router

__all__ = ["COOKIE", "PATH", "router"]
