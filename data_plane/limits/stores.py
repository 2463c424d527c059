"""Building the limiter pieces a worker needs from its settings (the one place that chooses a store).

``open_store`` returns the Redis store when ``TOLLGATE_REDIS_URL`` is set (any of its forms: one
server, TLS, Sentinel, Cluster; docs/redis.md), else the store shared by the processes of one worker
when ``--processes N`` made its table (``TOLLGATE_SHARED_LIMITS``), else the in-process memory store; ``open_metering``
the usage meter with its spool and HTTP sender — in standalone mode
(``--snapshot``, no control plane) a meter that only spools.  Redis is imported only when used.
"""

from __future__ import annotations

from data_plane.limits.memory import MemoryStore
from data_plane.limits.policy import LimitStore
from data_plane.metering.meter import HttpUsageSender, Metering
from data_plane.settings import WorkerSettings
from data_plane.tls.channel import channel_context


def open_store(settings: WorkerSettings) -> LimitStore:
    if settings.redis_url:
        from data_plane.limits.redis import RedisStore

        return RedisStore(
            settings.redis_url,
            prefix=settings.redis_prefix,
            fail_mode=settings.limit_fail_mode,
            tls_files=settings.redis_tls_files,
        )
    if settings.shared_limits is not None:
        from data_plane.limits.shared import SharedStore

        return SharedStore(settings.shared_limits)
    return MemoryStore()


def open_metering(settings: WorkerSettings) -> Metering:
    if not settings.control_plane_url or settings.snapshot_file is not None:
        return Metering(settings.node_id, settings.usage_spool_dir, None, interval=settings.usage_flush_interval)
    sender = HttpUsageSender(
        settings.control_plane_url,
        settings.cluster_token,
        node_id=settings.node_id,
        verify=channel_context(settings.control_plane_ca),  # the same trust as the config channel (sync.py)
    )
    return Metering(settings.node_id, settings.usage_spool_dir, sender, interval=settings.usage_flush_interval)
