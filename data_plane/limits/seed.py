"""Seeding the in-process store's quota counters from the control plane (issue 17, item 0).

A worker on the in-process store (no Redis) keeps its quota counters in memory; a restart would give
every customer its period's quota back.  Before it listens, a worker with a control plane therefore
delivers what its previous process left spooled, then reads ``GET /cluster/v1/usage/current`` (each
quota customer's use of its current period, as reported by the workers) and seeds the store with it
(``MemoryStore.seed``).  Nothing is counted locally before the seed (the worker is not listening
yet), so nothing is counted twice.  What a crash can still lose is what the worker had counted and
not yet flushed: at most one flush interval (``TOLLGATE_USAGE_FLUSH_INTERVAL``, 1 s by default).

Bounded by ``SEED_TIMEOUT``: a control plane that does not answer leaves the counters at zero (logged),
so a worker always starts.  Not on the request path: runs once, not compiled.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from data_plane.limits.memory import MemoryStore
from data_plane.limits.shared import SharedStore
from data_plane.metering.meter import Metering
from data_plane.settings import WorkerSettings
from data_plane.tls.channel import channel_context

log = logging.getLogger("tollgate.limits")

SEED_TIMEOUT = 3.0
CURRENT_USAGE_PATH = "/cluster/v1/usage/current"


async def seed_from_control_plane(
    store: MemoryStore | SharedStore, metering: Metering | None, settings: WorkerSettings
) -> None:
    assert settings.control_plane_url
    try:
        async with asyncio.timeout(SEED_TIMEOUT):
            if metering is not None and metering.spool.pending():
                await metering.deliver()  # the previous process's counts first: the seed then holds them
            async with httpx.AsyncClient(
                base_url=settings.control_plane_url.rstrip("/"),
                verify=channel_context(settings.control_plane_ca),
                headers={"authorization": f"Bearer {settings.cluster_token or ''}"},
            ) as client:
                resp = await client.get(CURRENT_USAGE_PATH)
        if resp.status_code != 200:
            raise ValueError(f"control plane answered {resp.status_code}")
        seeded = store.seed(resp.json()["customers"])
        log.info("quota counters seeded from the control plane's usage (%d customers)", seeded)
    except (TimeoutError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        log.warning("quota counters start from zero: the control plane's usage is not available (%s)", exc)
