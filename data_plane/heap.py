"""Giving freed heap back to the system after a big build (a full snapshot: a million keys).

CPython frees the previous config's objects into glibc's malloc, which keeps most of it mapped:
after a full snapshot a worker's (or the control plane's) RSS stays at the peak of the build (old
and new config both alive) rather than the size of what is kept. ``malloc_trim(0)`` returns the
free pages. Elsewhere than glibc (musl, macOS) it is a no-op. Not on the request path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

_trim: Any = None
if sys.platform.startswith("linux"):
    try:
        _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        _trim.argtypes = [ctypes.c_size_t]
        _trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        _trim = None


def release_free_memory() -> bool:
    """Return free heap pages to the system; True when the allocator did (glibc only)."""
    if _trim is None:
        return False
    return bool(_trim(0))
