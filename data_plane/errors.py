"""The data plane's one exception family.  A leaf: imports nothing (the snapshot contract uses it).

::

    DataPlaneError                          anything the data plane raises on purpose
    ├── SnapshotError (ValueError)          a snapshot that cannot be served; the message names the field
    │   ├── UnsupportedSchemaVersion        its major schema version is newer than this worker
    │   ├── PlanError                       one usage-plan entry (re-raised as SnapshotError with its place)
    │   └── UpstreamTlsError                an upstream's CA bundle or client certificate does not load
    ├── RequestRefused                      a client request refused while it is parsed (status + message)
    ├── PluginUnavailable (LookupError)     a plugin a policy names is not installed or cannot be loaded
    ├── LimitStoreError                     the limit store (Redis) cannot decide
    │   ├── RespConnectionError (ConnectionError)  connection failed or closed; a batch may or may not have run
    │   ├── RespError                       an error reply for one command (hiredis returns it as a value)
    │   └── UnexpectedReply                 Redis answered, but not as the script promises
    └── MeteringError                       usage metering
        ├── UsageSendError                  a usage batch was not applied; send it again later
        │   └── UsageRejected               refused as malformed; sending it again cannot succeed
        └── SpoolInUse (RuntimeError)       another process holds the usage spool directory

Foreign exceptions are translated where they enter: httpx errors of the usage sender become
:class:`UsageSendError` (``metering/meter.py``), socket errors of the Redis connection
:class:`RespConnectionError` for every waiting batch (``limits/resp.py``); the config channel
(``sync.py``) logs and retries what httpx raises and never lets it reach the request path.
The standard-library bases stay where callers relied on them (a ``SnapshotError`` is a
``ValueError``).  Gateway *responses* (status lines, error bodies) are not exceptions: they are
bytes in :mod:`data_plane.http.responses`.

Not compiled with mypyc (data_plane/native.py): compiled modules raise and catch these classes,
and a pure-Python class may have two bases where a native one may not.
"""

from __future__ import annotations


class DataPlaneError(Exception):
    """Root of every exception the data plane raises on purpose."""


class SnapshotError(DataPlaneError, ValueError):
    """The snapshot document is invalid; the message names the offending field."""


class UnsupportedSchemaVersion(SnapshotError):
    """The snapshot's major schema version is newer than this worker understands."""


class PlanError(SnapshotError):
    """A plan entry is invalid; :mod:`data_plane.snapshot` re-raises it as ``SnapshotError`` with its place."""


class UpstreamTlsError(SnapshotError):
    """An upstream's TLS settings cannot be loaded (``data_plane/tls/client.py``): its
    ``ca_certificates`` or its client certificate.  The message never holds key material."""


class RequestRefused(DataPlaneError):
    """Raised inside an httptools callback to stop parsing a request; the client connection
    answers ``status`` with ``message`` (status 0: stop quietly, the connection is closing)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


class PluginUnavailable(DataPlaneError, LookupError):
    """A plugin named by a ``plugins`` policy is not installed, or its entry point cannot be used
    (import error, wrong API version, bad schema); the message says which and why."""


class LimitStoreError(DataPlaneError):
    """The limit store cannot decide (the request path then fails open or closed as configured)."""


class RespConnectionError(LimitStoreError, ConnectionError):
    """The connection failed or was closed; the batch's commands may or may not have run."""


class RespError(LimitStoreError):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``) for one command of a batch."""


class UnexpectedReply(LimitStoreError):
    """Redis answered, but not as the script promises (a bug or a foreign server): fail the batch."""


class MeteringError(DataPlaneError):
    """Usage metering failed."""


class UsageSendError(MeteringError):
    """The batch was not applied; send it again later."""


class UsageRejected(UsageSendError):
    """The control plane refused the batch as malformed; sending it again cannot succeed."""


class SpoolInUse(MeteringError, RuntimeError):
    """Another process holds the usage spool directory (one spool per worker)."""
