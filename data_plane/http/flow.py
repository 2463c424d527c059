"""Why a client connection stopped reading: one bit per reason, reading resumes when none is left.

Several parts of the request path pause the same client transport for unrelated reasons, and each
must resume only its own (uvicorn's ``flow_control.py`` keeps one flag; here one exchange can be
waiting on a full upstream while a pipelined request is queued behind it).  The connection keeps
the set (``ClientConnection.pause_reading`` / ``resume_reading``).
"""

from __future__ import annotations

from typing import Final

UPSTREAM_FULL: Final = 1  # the upstream transport is over its high-water mark
QUEUED: Final = 2  # a pipelined request waits behind the active exchange
BODY_BUFFER: Final = 4  # request body buffered while no upstream connection is attached
UPGRADE: Final = 8  # bytes after an upgrade request wait for the upstream's 101
REFUSAL_PENDING: Final = 16  # a refusal waits for the pipelined requests before it

# Buffered request body waiting for an upstream connection (or behind a pipelined request) above
# which the client is paused (BODY_BUFFER).
BODY_BUFFER_HIGH_WATER: Final = 256 * 1024
