"""Usage plans -> :class:`~data_plane.limits.policy.LimitPolicy` objects per route, at compile time.

For each route the compiler stores ``policies`` (plan id -> the plan-wide policy of the route's API)
and, only when some plan overrides a method of this route, ``method_policies`` ((plan id, method) ->
the override's policy).  The request path then needs one or two dict lookups.  An override has its
own bucket (``throttle_scope = "<api_id>:<METHOD> <template>"``) replacing the plan-wide bucket on
that route; the quota stays the plan's.  The plan-wide bucket (scope ``""``) is shared by all the
plan's APIs, as the quota is.  A plan with neither throttle nor quota (and no override) limits nothing.
"""

from __future__ import annotations

from data_plane.limits.policy import LimitPolicy, Quota, Throttle
from data_plane.snapshot import Api, Route, Snapshot

# api id -> plan id -> (plan-wide policy or None, {(method, path template): override policy})
PlanTable = dict[str, dict[str, tuple[LimitPolicy | None, dict[tuple[str, str], LimitPolicy]]]]


def compile_plans(snapshot: Snapshot) -> PlanTable:
    shows = {a.id: a.rate_limit_headers for a in snapshot.apis}
    table: PlanTable = {}
    for plan in snapshot.plans:
        throttle = Throttle(plan.throttle.rate, plan.throttle.burst) if plan.throttle else None
        q = plan.quota
        quota = Quota(q.limit, q.period, q.overage, q.hard_cap) if q else None
        for pa in plan.apis:
            show = shows.get(pa.api_id, True)
            base = LimitPolicy(throttle, quota, "", show) if throttle or quota else None
            overrides = {
                (o.method, o.path): LimitPolicy(
                    Throttle(o.rate, o.burst), quota, f"{pa.api_id}:{o.method} {o.path}", show
                )
                for o in pa.overrides
            }
            table.setdefault(pa.api_id, {})[plan.id] = (base, overrides)
    return table


def route_policies(
    table: PlanTable, api: Api, route: Route
) -> tuple[dict[str, LimitPolicy], dict[tuple[str, str], LimitPolicy] | None]:
    """(plan id -> policy, (plan id, method) -> override policy or None when no plan overrides this route)."""
    policies: dict[str, LimitPolicy] = {}
    by_method: dict[tuple[str, str], LimitPolicy] = {}
    for plan_id, (base, overrides) in table.get(api.id, {}).items():
        if base is not None:
            policies[plan_id] = base
        for (method, path), policy in overrides.items():
            if path == route.path and (not route.methods or method in route.methods):
                by_method[(plan_id, method)] = policy
    return policies, by_method or None
