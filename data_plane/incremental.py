"""Applying a delta to a running worker, in time proportional to the change.

The worker keeps its config twice: as entities (:class:`~data_plane.snapshot.delta.EntityStore`, what a
delta is applied to and validated against) and compiled (:class:`~data_plane.compiler.CompiledConfig`).
:func:`apply_delta` updates the compiled form by what the delta names:

=====================  ================================================================================
changed kinds          what is redone
=====================  ================================================================================
keys, customers only   the store's packed key table (which the key lookup reads: ``AuthTables.source``)
                       and the customers' entries and client-certificate identities; the key entries
                       made from changed keys dropped; routes, balancers, pools untouched; the config
                       object keeps serving with its new revision and hash
apis only              the changed APIs' routes, on the previous upstreams, pools and key tables; the
                       router reuses every other API's compiled table (``keep_apis``); then the swap
upstreams,             the routes, balancers and policies (``compile_snapshot`` with the previous
certificates           config: pools, target states and stats carried over by key) on the *same* key
                       tables, which are not rebuilt; then the swap
plans                  everything (a plan changes its customers' grants and every route's limits)
=====================  ================================================================================

Apply time only (not on the request path): not compiled by mypyc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from data_plane.auth import (
    AuthTables,
    add_identities,
    customer_entry,
    drop_identities,
    plan_grants,
)
from data_plane.compiler import CompiledConfig
from data_plane.snapshot import ApiKey, Customer, Snapshot
from data_plane.snapshot.delta import Change, EntityStore

ROUTE_KINDS = frozenset({"api", "upstream", "certificate"})


def apply_delta(
    store: EntityStore,
    config: CompiledConfig,
    done: list[tuple[Change, Any]],
    recompile: Callable[[Snapshot, AuthTables | None, frozenset[str] | None], CompiledConfig],
) -> CompiledConfig:
    """The config after the changes ``done`` (as :meth:`EntityStore.apply` returned them, the store
    already moved).  Returns ``config`` itself (changed in place) for key and customer changes, else a
    new config from ``recompile(snapshot, auth tables to keep or None)``; raises what compiling raises,
    with ``config`` untouched then (the key tables are changed only after the compile succeeded)."""
    kinds = {change.kind for change, _ in done}
    if "plan" in kinds:
        return recompile(store.snapshot(), None, None)
    new = config
    route_kinds = kinds & ROUTE_KINDS
    if route_kinds == {"api"}:
        # APIs (with their routes) only: the others keep their compiled tables, upstreams stay
        changed = {change.id for change, _ in done if change.kind == "api"}
        keep = frozenset(store.apis) - changed
        new = recompile(store.snapshot(with_keys=False), config.auth, keep)
    elif route_kinds:
        new = recompile(store.snapshot(with_keys=False), config.auth, None)
    if config.auth is not None:
        update_auth(config.auth, store, done)
    new.revision = store.revision
    new.hash = store.hash
    new.schema_version = store.schema_version
    return new


def update_auth(tables: AuthTables, store: EntityStore, done: list[tuple[Change, Any]]) -> None:
    """Customers' entries and identities; the key entries made from the changed keys, or for the
    changed customers' keys, dropped (``tables.source`` is the store's key table, already changed:
    the next request with such a key makes its entry again)."""
    plan_apis: dict[str, frozenset[str]] | None = None
    for change, old in done:
        if change.kind != "customer":
            continue
        if old is not None:
            drop_identities(tables, old)
        for key_id in store.keys.ids_of_customer(change.id):
            k = store.keys.get(key_id)
            if k is not None:
                tables.keys.pop(k.key_hash, None)
        customer: Customer | None = change.value
        if customer is None:
            tables.customers.pop(change.id, None)
            continue
        if plan_apis is None:
            plan_apis = plan_grants(list(store.plans.values()))
        entry = customer_entry(customer, plan_apis)
        if entry is None:
            tables.customers.pop(change.id, None)
            continue
        tables.customers[customer.id] = entry
        add_identities(tables, customer, entry)
    for change, old in done:
        if change.kind != "key":
            continue
        old_key: ApiKey | None = old
        if old_key is not None:
            tables.keys.pop(old_key.key_hash, None)
        key: ApiKey | None = change.value
        if key is not None:
            tables.keys.pop(key.key_hash, None)
