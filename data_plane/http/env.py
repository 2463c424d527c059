"""What an exchange needs from the worker that runs it, and nothing else.

The worker owns one :class:`ExchangeEnv` and keeps it current (a config swap and the start of a
drain are assignments to it), so an exchange reads ``env.config`` when it starts and never holds
the worker.  Tests and ``bench/hotpath.py`` build one with fakes (``tests/fakes.py``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from data_plane.limits.policy import LimitStore
from data_plane.metering.meter import Metering
from data_plane.observe.observer import Observer

if TYPE_CHECKING:
    from data_plane.compiler import CompiledConfig


class ExchangeEnv:
    __slots__ = ("loop", "observer", "limiter", "metering", "body_timeout", "https_port", "config", "draining")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        observer: Observer,
        limiter: LimitStore,
        metering: Metering | None,
        *,
        body_timeout: float,
        https_port: int = 443,
    ) -> None:
        self.loop = loop
        self.observer = observer  # counters, latency, access log: told once per request
        self.limiter = limiter  # usage-plan counters (memory or Redis)
        self.metering = metering  # admitted requests per customer and API (None: nothing meters)
        self.body_timeout = body_timeout  # TOLLGATE_BODY_TIMEOUT: a body stalled this long is 408
        self.https_port = https_port  # where https_only APIs redirect plain-HTTP GET/HEAD to
        self.config: CompiledConfig | None = None  # the tables requests start with; swapped by the worker
        self.draining = False  # the worker is shutting down: last responses say connection: close
