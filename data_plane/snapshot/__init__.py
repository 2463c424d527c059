"""The contract between the control plane and the data plane.

A snapshot is the whole routing configuration at one config revision: upstreams with their targets,
APIs with their routes, customers, keys and usage plans.  The control plane builds it from the
database (``control_plane`` imports this package); a worker validates it, compiles it into lookup
tables and serves from it.  This package is a leaf: it imports nothing of ours but
:mod:`data_plane.errors` (itself a leaf) and no third-party package, so a worker can run from a
snapshot file with no control plane at all (``tests/unit/data_plane/test_layering.py`` checks it).

=========  ===============================================================================
module     job
=========  ===============================================================================
types      the frozen dataclasses (one per wire object) and the contract's constants
wire       encoding (``content``, ``to_dict``, ``to_json``) and the hashing rules (``compute_hash``,
           ``sealed``; a field added later is left out while it has its default, so old hashes hold)
parse      decoding and validation (``from_json``, ``from_dict``, ``validate``,
           ``check_schema_version``): wire form -> ``Snapshot`` or :class:`SnapshotError`
paths      the path-template grammar (route templates, base paths) shared by the parser, the
           control plane's schemas and the router
=========  ===============================================================================

Exceptions (defined in :mod:`data_plane.errors`, re-exported here): :class:`SnapshotError` (invalid
document; a ``ValueError``) and its subclasses :class:`UnsupportedSchemaVersion` and
:class:`PlanError`.

``Snapshot`` keeps its methods (``Snapshot.from_json(data)``, ``snap.to_json()``, ``snap.sealed()``,
...), because every caller on both planes uses them; each is one line calling the plain function in
``wire`` or ``parse``.  Those modules construct and read the dataclasses, so they import ``types``;
the methods therefore import ``wire`` / ``parse`` when called, not at module level (a lookup in
``sys.modules``; snapshots are encoded and parsed per config change, never per request).  Nothing is
attached to the classes from outside: what ``types.py`` says is all a class has.
"""

from __future__ import annotations

from data_plane.errors import (
    PlanError,
    SnapshotError,
    UnsupportedSchemaVersion,
)
from data_plane.snapshot.parse import check_schema_version
from data_plane.snapshot.paths import (
    Segment,
    normalize_base_path,
    param_names,
    parse_template,
    split_template,
    template_shape,
)
from data_plane.snapshot.types import (
    ALGORITHMS,
    AUTH_MODES,
    CUSTOMER_STATUSES,
    DEFAULT_KEEPALIVE_TIMEOUT,
    HASH_ON,
    HTTP_METHODS,
    JWK_TYPES,
    JWT_ALGORITHMS,
    POLICY_KINDS,
    PROBE_METHODS,
    QUOTA_PERIODS,
    SCHEMA_VERSION,
    SUPPORTED_MAJOR,
    TARGET_SCHEMES,
    Api,
    ApiAuth,
    ApiKey,
    Certificate,
    Customer,
    HealthCheck,
    Jwk,
    Passive,
    Plan,
    PlanApi,
    PlanOverride,
    PlanQuota,
    PlanThrottle,
    Route,
    Snapshot,
    Target,
    Upstream,
)

__all__ = [
    "ALGORITHMS",
    "AUTH_MODES",
    "CUSTOMER_STATUSES",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "HASH_ON",
    "HTTP_METHODS",
    "JWK_TYPES",
    "JWT_ALGORITHMS",
    "POLICY_KINDS",
    "PROBE_METHODS",
    "QUOTA_PERIODS",
    "SCHEMA_VERSION",
    "SUPPORTED_MAJOR",
    "TARGET_SCHEMES",
    "Api",
    "ApiAuth",
    "ApiKey",
    "Certificate",
    "Customer",
    "HealthCheck",
    "Jwk",
    "Passive",
    "Plan",
    "PlanApi",
    "PlanError",
    "PlanOverride",
    "PlanQuota",
    "PlanThrottle",
    "Route",
    "Segment",
    "Snapshot",
    "SnapshotError",
    "Target",
    "UnsupportedSchemaVersion",
    "Upstream",
    "check_schema_version",
    "normalize_base_path",
    "param_names",
    "parse_template",
    "split_template",
    "template_shape",
]
