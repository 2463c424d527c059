"""``tollgate upstreams|targets|apis|routes|nodes list|get|create|update|delete`` over the admin API
(and ``tollgate apis purge-cache NAME|ID``).

Every command comes from one :class:`Resource` entry in :data:`RESOURCES`; adding customers, keys or
usage plans is one more entry.  Resources are named by id or by their label (a name, ``host:port`` for
targets, the path for routes).  Fields are given as ``KEY=VALUE``: the value is read as JSON when it
parses (``port=8080``, ``strip_base_path=false``, ``hosts='["a.example"]'``) and as a string otherwise;
list fields also take ``a,b``; a reference field takes a name (``upstream=orders-svc`` → ``upstream_id``);
a file field takes ``@path`` for the file's text (``ca_certificates=@ca.pem``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from tollgate import render
from tollgate.adminclient import AdminClient, AdminError
from tollgate.render import Output

Item = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    name: str  # command name, plural
    singular: str
    path: str  # collection path; "{parent}" is the parent's id
    columns: tuple[str, ...]  # table columns (a reference's label column is named after the reference)
    label: Callable[[Item], str] = lambda item: str(item.get("name", item["id"]))
    aliases: Callable[[Item], tuple[str, ...]] = lambda item: ()  # other names it answers to (a key's name)
    parent: str | None = None  # the parent resource's name: its label or id comes from --<parent singular>
    refs: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # input name -> (resource, id field)
    list_fields: frozenset[str] = frozenset()
    file_fields: frozenset[str] = frozenset()  # "@path" reads the value from that file (PEM bundles)
    children: tuple[str, ...] = ()  # resources shown with `get`
    verbs: frozenset[str] = frozenset({"list", "get", "create", "update", "delete"})


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource(
            "upstreams",
            "upstream",
            "/v1/upstreams",
            ("id", "name", "algorithm", "connect_timeout", "read_timeout", "retries"),
            children=("targets",),
            file_fields=frozenset({"ca_certificates"}),
        ),
        Resource(
            "targets",
            "target",
            "/v1/upstreams/{parent}/targets",
            ("id", "scheme", "host", "port", "weight"),
            label=lambda t: f"{t['host']}:{t['port']}",
            parent="upstreams",
        ),
        Resource(
            "apis",
            "api",
            "/v1/apis",
            ("id", "name", "hosts", "base_path", "auth", "strip_base_path", "max_body_bytes", "https_only"),
            list_fields=frozenset({"hosts"}),
            children=("routes",),
        ),
        Resource(
            "routes",
            "route",
            "/v1/apis/{parent}/routes",
            ("id", "methods", "path", "upstream"),
            label=lambda r: str(r["path"]),
            parent="apis",
            refs={"upstream": ("upstreams", "upstream_id")},
            list_fields=frozenset({"methods"}),
        ),
        Resource(
            "plans",
            "plan",
            "/v1/usage-plans",
            ("id", "name", "throttle", "quota", "apis"),
            list_fields=frozenset({"apis"}),
            refs={"apis": ("apis", "apis")},  # shown: API names (and overrides) for the entries' api_id
        ),
        Resource(
            "customers",
            "customer",
            "/v1/customers",
            ("id", "name", "status", "email", "plan", "apis", "mtls_fingerprints", "mtls_subjects"),
            # subjects hold commas (CN=a,O=b): give them as a JSON list, mtls_subjects='["CN=a,O=b"]'
            list_fields=frozenset({"apis", "api_ids", "mtls_fingerprints"}),
            # plan=NAME subscribes (PUT /v1/customers/{id}/plan; plan=null unsubscribes), apis=a,b grants
            refs={"plan": ("plans", "plan_id"), "apis": ("apis", "api_ids")},
            children=("keys",),
        ),
        Resource(
            "keys",  # `create` prints the response, which holds the key: shown this once
            "key",
            "/v1/customers/{parent}/keys",
            ("id", "prefix", "name", "status", "expires_at", "last_used_at", "key"),
            label=lambda k: str(k["prefix"]),
            aliases=lambda k: (str(k["name"]),) if k.get("name") else (),
            parent="customers",
            verbs=frozenset({"list", "get", "create", "delete"}),
        ),
        Resource(
            "nodes",
            "node",
            "/v1/nodes",
            ("id", "hostname", "pid", "version", "revision", "in_sync", "stale", "last_seen", "last_error"),
            label=lambda n: str(n["id"]),
            verbs=frozenset({"list", "get"}),
        ),
        Resource(
            "admin-tokens",  # `create` prints the token: shown this once
            "admin token",
            "/v1/admin-tokens",
            ("id", "name", "role", "prefix", "created_at", "revoked_at", "token"),
            verbs=frozenset({"list", "create", "delete"}),
        ),
        Resource(
            "plugins",
            "plugin",
            "/v1/plugins",
            ("name", "description"),
            verbs=frozenset({"list"}),
        ),
    )
}

UrlOpt = Annotated[str | None, typer.Option("--url", help="Admin API URL [TOLLGATE_ADMIN_URL]", show_default=False)]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Admin token, sent as bearer [TOLLGATE_ADMIN_TOKEN]", show_default=False)
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table | json | yaml")]
RefArg = Annotated[str, typer.Argument(help="id or name", show_default=False)]
FieldsArg = Annotated[list[str] | None, typer.Argument(help="KEY=VALUE fields", show_default=False)]


# ---------------------------------------------------------------------------- resolution


def collection(client: AdminClient, res: Resource, parent_ref: str | None) -> str:
    if res.parent is None:
        return res.path
    parent = RESOURCES[res.parent]
    if not parent_ref:
        raise AdminError(f"{res.name} belong to a parent {parent.singular}: give --{parent.singular} NAME|ID")
    return res.path.format(parent=resolve(client, parent, parent_ref, None)["id"])


def resolve(client: AdminClient, res: Resource, ref: str, parent_ref: str | None) -> Item:
    """The item whose id or label is ``ref`` (labels must be unambiguous)."""
    items = client.list_all(collection(client, res, parent_ref))
    for item in items:
        if item["id"] == ref:
            return item
    matches = [item for item in items if res.label(item) == ref]
    if not matches:
        matches = [item for item in items if ref in res.aliases(item)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AdminError(f"{len(matches)} {res.name} are called {ref!r}; use the id")
    raise AdminError(f"{res.singular} {ref!r} not found")


def parse_fields(client: AdminClient, res: Resource, pairs: Sequence[str]) -> Item:
    body: Item = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE")
        if key in res.file_fields and raw.startswith("@"):
            try:
                body[key] = Path(raw[1:]).read_text()
            except OSError as exc:
                raise typer.BadParameter(f"{key}: cannot read {raw[1:]}: {exc.strerror}") from None
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if key in res.list_fields and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if key in res.refs and isinstance(value, str):
            target, id_field = res.refs[key]
            body[id_field] = resolve(client, RESOURCES[target], value, None)["id"]
            continue
        if key in res.refs and isinstance(value, list):
            target, id_field = res.refs[key]
            body[id_field] = [_ref_entry(client, RESOURCES[target], v, entries=id_field == key) for v in value]
            continue
        if key in res.refs and value is None:
            body[res.refs[key][1]] = None
            continue
        body[key] = value
    return body


def _ref_entry(client: AdminClient, target: Resource, value: Any, *, entries: bool) -> Any:
    """One element of a list of references: a name or id → the id.  ``entries``: the list holds objects
    naming the resource by ``api_id`` (a plan's ``apis``): a name becomes ``{"api_id": id}``, and an
    object may name it by name in ``api`` (``apis='[{"api": "orders", "overrides": [...]}]'``)."""
    if not entries:
        return resolve(client, target, str(value), None)["id"]
    if isinstance(value, dict):
        entry = dict(value)
        if "api" in entry:
            entry["api_id"] = resolve(client, target, str(entry.pop("api")), None)["id"]
        return entry
    return {"api_id": resolve(client, target, str(value), None)["id"]}


def _labelled(value: Any, labels: Mapping[str, str]) -> Any:
    """Ids → labels, in lists too; a plan's entry (``{"api_id", "overrides"}``) → the API and its overrides."""
    if isinstance(value, list):
        return [_labelled(v, labels) for v in value]
    if isinstance(value, dict) and "api_id" in value:
        overrides = value.get("overrides") or []
        shown = labels.get(value["api_id"], value["api_id"])
        n = len(overrides)
        return f"{shown} ({n} route override{'s' if n != 1 else ''})" if n else shown
    return labels.get(value, value) if isinstance(value, str) else value


def with_ref_labels(client: AdminClient, res: Resource, items: list[Item]) -> list[Item]:
    """Add a label column per reference (``upstream`` next to ``upstream_id``, ``apis`` for ``api_ids``)
    for tables: names, not ids."""
    for key, (target, id_field) in res.refs.items():
        target_res = RESOURCES[target]
        labels = {t["id"]: target_res.label(t) for t in client.list_all(target_res.path)}
        items = [{**i, key: _labelled(i.get(id_field), labels)} for i in items]
    return items


# A customer's plan is a subscription (its own endpoint), not a customer field.
SUBSCRIPTION_FIELDS = ("billing_anchor", "time_zone")


def _subscription(body: Item) -> Item | None:
    """Pop ``plan_id`` (and the billing cycle fields) from a customer body: ``{}`` to unsubscribe,
    the PUT body to subscribe, None when the fields named no plan."""
    if "plan_id" not in body:
        if any(k in body for k in SUBSCRIPTION_FIELDS):
            raise AdminError("billing_anchor and time_zone go with plan=NAME")
        return None
    plan_id = body.pop("plan_id")
    cycle = {k: body.pop(k) for k in SUBSCRIPTION_FIELDS if k in body}
    return {"plan_id": plan_id, **cycle} if plan_id is not None else {}


def write(client: AdminClient, res: Resource, path: str, body: Item, *, create: bool) -> Item:
    """POST (create) or PATCH ``path``; a customer's ``plan`` goes to its subscription endpoint."""
    sub = _subscription(body) if res.name == "customers" else None
    if create:
        item: Item = client.post(path, body)
    else:
        item = client.patch(path, body) if body or sub is None else client.get(path)
    if sub is not None:
        item_path = path if not create else f"{path}/{item['id']}"
        if sub:
            client.request("PUT", f"{item_path}/plan", json=sub)
        else:
            client.delete(f"{item_path}/plan")
        item = client.get(item_path)
    return item


# ---------------------------------------------------------------------------- commands


def run_admin(url: str | None, token: str | None, body: Callable[[AdminClient], None]) -> None:
    try:
        with AdminClient(url, token) as client:
            body(client)
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None


def _show(client: AdminClient, res: Resource, item: Item, output: Output, parent_ref: str | None) -> None:
    children = {}
    for child_name in res.children:
        child = RESOURCES[child_name]
        children[child_name] = client.list_all(child.path.format(parent=item["id"]))
    if output is not Output.table:
        render.data({**item, **children}, output)
        return
    console = render.stdout()
    console.print(render.record(with_ref_labels(client, res, [item])[0], res.columns))
    for child_name, rows in children.items():
        child = RESOURCES[child_name]
        console.print(render.table(with_ref_labels(client, child, rows), child.columns, title=child_name))


def build(res: Resource) -> typer.Typer:
    app = typer.Typer(help=f"{res.name.capitalize()} on the control plane.", no_args_is_help=True)
    parent = RESOURCES[res.parent] if res.parent else None
    ParentOpt = Annotated[
        str | None,
        typer.Option(
            f"--{parent.singular}" if parent else "--parent",
            help=f"the {parent.singular} (name or id)" if parent else "",
            hidden=parent is None,
            show_default=False,
        ),
    ]

    def list_(
        parent_ref: str | None = None, url: str | None = None, token: str | None = None, output: Output = Output.table
    ) -> None:
        def body(client: AdminClient) -> None:
            items = client.list_all(collection(client, res, parent_ref))
            if output is Output.table:
                render.stdout().print(render.table(with_ref_labels(client, res, items), res.columns))
            else:
                render.data(items, output)

        run_admin(url, token, body)

    def get(
        ref: str,
        parent_ref: str | None = None,
        url: str | None = None,
        token: str | None = None,
        output: Output = Output.table,
    ) -> None:
        run_admin(url, token, lambda c: _show(c, res, resolve(c, res, ref, parent_ref), output, parent_ref))

    def create(
        fields: list[str] | None = None,
        parent_ref: str | None = None,
        url: str | None = None,
        token: str | None = None,
        output: Output = Output.table,
    ) -> None:
        def body(client: AdminClient) -> None:
            body = parse_fields(client, res, fields or [])
            item = write(client, res, collection(client, res, parent_ref), body, create=True)
            _show(client, res, item, output, parent_ref)

        run_admin(url, token, body)

    def update(
        ref: str,
        fields: list[str] | None = None,
        parent_ref: str | None = None,
        url: str | None = None,
        token: str | None = None,
        output: Output = Output.table,
    ) -> None:
        def body(client: AdminClient) -> None:
            item = resolve(client, res, ref, parent_ref)
            path = f"{collection(client, res, parent_ref)}/{item['id']}"
            item = write(client, res, path, parse_fields(client, res, fields or []), create=False)
            _show(client, res, item, output, parent_ref)

        run_admin(url, token, body)

    def delete(ref: str, parent_ref: str | None = None, url: str | None = None, token: str | None = None) -> None:
        def body(client: AdminClient) -> None:
            item = resolve(client, res, ref, parent_ref)
            client.delete(f"{collection(client, res, parent_ref)}/{item['id']}")
            render.stderr().print(f"deleted {res.singular} {res.label(item)} ({item['id']})")

        run_admin(url, token, body)

    common = {"parent_ref": ParentOpt, "url": UrlOpt, "token": TokenOpt, "return": None}
    commands: dict[str, tuple[Callable[..., None], dict[str, Any], str]] = {
        "list": (list_, {"output": OutputOpt}, f"List {res.name}."),
        "get": (get, {"ref": RefArg, "output": OutputOpt}, f"Show one {res.singular}."),
        "create": (
            create,
            {"fields": FieldsArg, "output": OutputOpt},
            f"Create a {res.singular} from KEY=VALUE fields.",
        ),
        "update": (
            update,
            {"ref": RefArg, "fields": FieldsArg, "output": OutputOpt},
            f"Change fields of a {res.singular}.",
        ),
        "delete": (delete, {"ref": RefArg}, f"Delete a {res.singular}."),
    }
    for verb, (fn, params, help_text) in commands.items():
        if verb not in res.verbs:
            continue
        # Typer reads options from annotations; these are built per resource (the parent's option name),
        # so they are set here as objects rather than written in the signatures.
        fn.__annotations__ = {**params, **common}
        fn.__doc__ = help_text
        app.command(verb)(fn)
    return app


def purge_cache(ref: RefArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.table) -> None:
    """Drop an API's cached responses in every worker (the purge goes out with a new config revision)."""

    def body(client: AdminClient) -> None:
        api = resolve(client, RESOURCES["apis"], ref, None)
        purged = client.post(f"/v1/apis/{api['id']}/cache/purge", None)
        if output is Output.table:
            render.stdout().print(render.record(purged, ("api_id", "cache_epoch", "revision")))
        else:
            render.data(purged, output)

    run_admin(url, token, body)


def register(root: typer.Typer, extra: Mapping[str, Mapping[str, Callable[..., None]]] | None = None) -> None:
    """One group per resource; ``extra``: more commands of a group (``keys rotate``: cli_admin.py)."""
    for res in RESOURCES.values():
        app = build(res)
        if res.name == "apis":
            app.command("purge-cache")(purge_cache)
        for name, fn in (extra or {}).get(res.name, {}).items():
            app.command(name)(fn)
        root.add_typer(app, name=res.name)
