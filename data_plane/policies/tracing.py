"""The ``tracing`` policy: OpenTelemetry traces of a route's requests (``{"sample_ratio": 0.01}``).

Compiled once per snapshot into a :class:`~data_plane.observe.tracing.RouteTracing`, which the
request path uses (``data_plane/observe/tracing.py``: Trace Context, sampling, span records);
the spans go to the worker's exporter (``PolicyEnv.tracer``, ``data_plane/observe/otlp.py``).
A worker without an OTLP endpoint has no exporter: the policy still propagates ``traceparent``
(and decides the sampled flag it sends) but records nothing.
"""

from __future__ import annotations

from typing import Any

from data_plane.errors import SnapshotError
from data_plane.observe.tracing import RouteTracing, SpanSink
from data_plane.snapshot import Api, Route

FIELDS = frozenset(("sample_ratio",))


def compile_tracing(doc: dict[str, Any], where: str, sink: SpanSink | None, api: Api, route: Route) -> RouteTracing:
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise SnapshotError(f"{where}.{unknown[0]} is not a tracing setting")
    ratio = doc.get("sample_ratio", 1.0)
    if ratio is None:
        ratio = 1.0
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
        raise SnapshotError(f"{where}.sample_ratio must be a number from 0 to 1")
    base = "" if api.base_path == "/" else api.base_path
    return RouteTracing(float(ratio), sink, api.id, api.name, route.id, base + route.path)
