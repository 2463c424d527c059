"""The plugins policy: compiled per route at snapshot time, run by admission (on_request) and the
exchange (on_response); a plugin that raises is answered 500, counted, and the worker goes on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_plane import snapshot as snap
from data_plane.compiler import CompiledConfig, compile_snapshot
from data_plane.errors import SnapshotError
from data_plane.http.admission import Admitted, HostCache, Refused, admit
from data_plane.policies import PolicyEnv
from data_plane.policies.plugin_registry import PluginRegistry
from data_plane.policies.plugins import compile_plugins
from tests.fakes import Gateway, one_api_snapshot, pool_connection, response, upstream_with_targets
from tollgate.plugins import API_VERSION, Plugin, Refusal, RequestView, ResponseView
from tollgate.plugins.builtin.ab_split import AbSplit
from tollgate.plugins.builtin.request_size import RequestSizeByCustomer

KEY = "tg_plugins00_0123456789abcdefghijklmnopqrstuvwxyz"
SEEN: list[dict[str, Any]] = []


class Spy(Plugin):
    """Records what it was shown; adds lines; refuses what its config says."""

    name = "spy"
    api_version = API_VERSION
    config_schema = {"type": "object", "properties": {"refuse": {"type": "string"}}, "additionalProperties": False}

    def on_request(self, request: RequestView) -> Refusal | None:
        SEEN.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "customer_id": request.customer_id,
                "plan_id": request.plan_id,
                "route_id": request.route_id,
                "api_name": request.api_name,
                "body_length": request.body_length,
                "client_ip": request.client_ip,
                "x-in": request.header("x-in"),
                "x-api-key": request.header("x-api-key"),
            }
        )
        refuse = self.config.get("refuse")
        if refuse is not None and refuse == request.header("x-in"):
            return Refusal(402, "pay first", [("x-why", "plugin")])
        request.add_upstream_header("x-from-plugin", "1")
        request.add_upstream_header("x-in", "replaced")  # the client's line of this name is replaced
        request.add_response_header("x-plugin-saw", request.method)
        return None

    def on_response(self, response: ResponseView) -> None:
        response.add_header("x-upstream-status", str(response.status))
        response.add_header("server-timing", "plugin")  # replaces the upstream's


class Boom(Plugin):
    name = "boom"
    api_version = API_VERSION
    config_schema = {"type": "object", "properties": {"at": {"enum": ["request", "response", "init"]}}}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        if config.get("at") == "init":
            raise RuntimeError("cannot start")

    def on_request(self, request: RequestView) -> Refusal | None:
        if self.config.get("at") == "request":
            raise KeyError("secret detail")
        return None

    def on_response(self, response: ResponseView) -> None:
        if self.config.get("at") == "response":
            raise ValueError("secret detail")


class Sloppy(Plugin):
    name = "sloppy"
    api_version = API_VERSION

    def on_request(self, request: RequestView) -> Any:
        return 403  # not a Refusal


class Passive(Plugin):
    name = "passive"  # no hooks at all
    api_version = API_VERSION


def registry() -> PluginRegistry:
    return PluginRegistry.of(Spy, Boom, Sloppy, Passive, RequestSizeByCustomer, AbSplit)


def _config(api_plugins: list[dict[str, Any]] | None, route_plugins: list[dict[str, Any]] | None = None, **api: Any):
    routes = (
        snap.Route(
            id="r1",
            path="/items/{id}",
            upstream_id="u",
            policies={"plugins": route_plugins} if route_plugins is not None else None,
        ),
        snap.Route(id="r2", path="/other", upstream_id="u"),
    )
    a = snap.Api(
        id="a",
        name="shop",
        base_path="/v1",
        routes=routes,
        policies={"plugins": api_plugins} if api_plugins is not None else None,
        **api,
    )
    customer = snap.Customer(id="c1", name="one", plan_id="gold")
    key = snap.ApiKey(id="k", customer_id="c1", key_hash=hashlib.sha256(KEY.encode()).hexdigest(), prefix=KEY[:11])
    plan = snap.Plan(id="gold", name="gold", apis=(snap.PlanApi(api_id="a"),))
    s = snap.Snapshot(
        revision=1,
        upstreams=(upstream_with_targets(1),),
        apis=(a,),
        customers=(customer,),
        keys=(key,),
        plans=(plan,),
    )
    reg = registry()
    return compile_snapshot(s.sealed(), policy_env=PolicyEnv(plugins=reg)), reg


def _admit(config: CompiledConfig, head: bytes) -> Admitted | Refused:
    line, _, rest = head.partition(b"\r\n")
    method, url = line.split(b" ")[:2]
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (h.partition(b":") for h in rest.split(b"\r\n") if h)]
    return admit(
        config,
        method.decode(),
        url,
        headers,
        "1.1",
        upgrade=False,
        body_bytes=0,
        hosts=HostCache(),
        peer_ip=b"10.0.0.7",
    )


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


# ---------------------------------------------------------------- compile


def test_a_route_gets_the_hooks_of_its_plugins_and_a_route_list_replaces_the_apis() -> None:
    config, _ = _config([{"name": "spy", "config": {}}, {"name": "passive"}], route_plugins=[])
    r1 = config.router.match("a", "GET", "/v1/items/1")
    r2 = config.router.match("a", "GET", "/v1/other")
    assert not isinstance(r1, Exception) and not isinstance(r2, Exception)
    assert r1[0].traffic is not None and r1[0].traffic.plugins is None  # [] on the route: none
    chain = r2[0].traffic.plugins  # type: ignore[union-attr]
    assert chain is not None
    assert [n for n, _ in chain.request] == ["spy"] and [n for n, _ in chain.response] == ["spy"]  # passive: none


def test_a_plugin_list_whose_plugins_have_no_hooks_compiles_to_nothing() -> None:
    assert compile_plugins([{"name": "passive", "config": {}}], "p", registry()) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([{"name": "nope"}], r"p\[0\]: no plugin named 'nope' is installed"),
        ([{"name": "spy", "config": {"refuse": 1}}], r"p\[0\]\.config\.refuse: 1 is not of type 'string'"),
        ([{"name": "spy", "config": {"other": 1}}], r"p\[0\]\.config: Additional properties"),
        ([{"name": "spy", "config": []}], r"p\[0\]\.config must be an object"),
        ([{"name": "boom", "config": {"at": "init"}}], r"p\[0\]: plugin 'boom' refused its config: RuntimeError"),
        ([{"name": "spy", "extra": 1}], r"p\[0\]: unknown member 'extra'"),
        (["spy"], r"p\[0\] must be an object with a name"),
        ({"name": "spy"}, r"p must be an array"),
    ],
)
def test_a_bad_plugins_policy_is_a_snapshot_error_naming_the_entry(doc: Any, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        compile_plugins(doc, "p", registry())


def test_a_snapshot_naming_an_unknown_plugin_is_refused_whole() -> None:
    with pytest.raises(SnapshotError, match=r"api 'shop' route '/items/\{id\}': policies\.plugins\[0\]: no plugin"):
        _config(None, route_plugins=[{"name": "missing"}])


def test_each_route_gets_its_own_instance_of_a_deep_copied_config() -> None:
    config, _ = _config([{"name": "spy", "config": {}}])
    routes = [config.router.match("a", "GET", p) for p in ("/v1/items/1", "/v1/other")]
    instances = [r[0].traffic.plugins.request[0][1].__self__ for r in routes]  # type: ignore[union-attr]
    assert instances[0] is not instances[1] and instances[0].config is not instances[1].config


# ---------------------------------------------------------------- on_request in admission


def test_on_request_sees_the_request_after_auth_and_adds_lines() -> None:
    config, _ = _config([{"name": "spy", "config": {}}], auth="api_key")
    head = (
        b"POST /v1/items/%37?q=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nx-in: client\r\nx-api-key: " + KEY.encode()
    )
    v = _admit(config, head)
    assert isinstance(v, Admitted), v
    (seen,) = SEEN
    assert seen == {
        "method": "POST",
        "path": "/v1/items/7",  # canonical
        "query": "q=1",
        "customer_id": "c1",
        "plan_id": "gold",
        "route_id": "r1",
        "api_name": "shop",
        "body_length": 5,
        "client_ip": "10.0.0.7",
        "x-in": "client",
        "x-api-key": None,  # the credential is stripped before plugins see the request
    }
    assert b"x-from-plugin: 1\r\n" in v.head
    assert b"x-in: replaced\r\n" in v.head and b"x-in: client" not in v.head  # a client cannot forge it
    assert v.response_extra == b"x-plugin-saw: POST\r\n"


def test_a_refusal_answers_with_its_status_message_and_lines() -> None:
    config, _ = _config([{"name": "spy", "config": {"refuse": "no"}}])
    v = _admit(config, b"GET /v1/other HTTP/1.1\r\nhost: a\r\nx-in: no")
    assert isinstance(v, Refused)
    assert (v.status, v.message, v.extra) == (402, "pay first", b"x-why: plugin\r\n")
    assert v.route is not None and v.route.id == "r2"


def test_plugins_run_in_order_and_the_first_refusal_stops_the_chain() -> None:
    config, _ = _config([{"name": "request-size-by-customer", "config": {"default": 3}}, {"name": "spy"}])
    v = _admit(config, b"POST /v1/other HTTP/1.1\r\nhost: a\r\ncontent-length: 4")
    assert isinstance(v, Refused) and v.status == 413
    assert SEEN == []  # spy never ran
    assert isinstance(_admit(config, b"POST /v1/other HTTP/1.1\r\nhost: a\r\ncontent-length: 3"), Admitted)
    assert len(SEEN) == 1


@pytest.mark.parametrize("plugin", ["boom", "sloppy"])
def test_a_failing_on_request_is_a_500_that_names_the_plugin_only(plugin: str) -> None:
    config, reg = _config([{"name": plugin, "config": {"at": "request"} if plugin == "boom" else {}}])
    v = _admit(config, b"GET /v1/other HTTP/1.1\r\nhost: a")
    assert isinstance(v, Refused)
    assert (v.status, v.message) == (500, f"plugin {plugin} failed")
    assert "secret" not in v.message
    assert reg.errors == {plugin: 1}
    _admit(config, b"GET /v1/other HTTP/1.1\r\nhost: a")
    assert reg.errors == {plugin: 2}


def test_a_route_without_plugins_never_builds_a_view(monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = _config(None)
    import tollgate.plugins

    def refuse(*_a: Any) -> None:
        raise AssertionError("a view was built")

    monkeypatch.setattr(tollgate.plugins.RequestView, "__init__", refuse)
    assert isinstance(_admit(config, b"GET /v1/other HTTP/1.1\r\nhost: a"), Admitted)


# ---------------------------------------------------------------- on_response in the exchange


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Any]:
    made: list[Gateway] = []

    def make(plugins: list[dict[str, Any]]) -> tuple[Gateway, PluginRegistry]:
        gw = Gateway(one_api_snapshot(upstream_with_targets(1)), tmp_path / str(len(made)))
        made.append(gw)
        reg = registry()
        gw.worker.policy_env.plugins = reg
        gw.worker.apply(one_api_snapshot(upstream_with_targets(1), policies={"plugins": plugins}))
        return gw, reg

    yield make
    for gw in made:
        gw.close()


GET = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"


def test_on_response_adds_lines_to_what_the_client_gets(gateway: Any) -> None:
    gw, _ = gateway([{"name": "spy"}])
    gw.send(GET)
    assert b"x-from-plugin: 1\r\n" in gw.sent_upstream("t0")
    gw.respond(response(201, b"made", b"server-timing: upstream\r\n"))
    out = gw.received()
    assert out.startswith(b"HTTP/1.1 201 ")
    assert b"x-upstream-status: 201\r\n" in out and b"x-plugin-saw: GET\r\n" in out
    assert b"server-timing: plugin\r\n" in out and b"server-timing: upstream" not in out
    assert out.endswith(b"made")


def test_a_failing_on_response_answers_500_closes_the_upstream_and_the_worker_serves_on(gateway: Any) -> None:
    gw, reg = gateway([{"name": "boom", "config": {"at": "response"}}])
    gw.send(GET)
    upstream = gw.upstream_transports["t0"]
    gw.respond(response(200, b"the upstream's body"))
    out = gw.received()
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b'"message":"plugin boom failed"' in out
    assert b"secret" not in out and b"the upstream's body" not in out
    assert upstream.closed  # its body was not read: the connection cannot be reused
    assert reg.errors == {"boom": 1}
    # the client connection is kept (the 500 was a complete answer) and the next request goes through
    assert not gw.client_transport.closed
    gw.worker.policy_env.plugins = reg
    gw.worker.apply(one_api_snapshot(upstream_with_targets(1), policies={"plugins": [{"name": "spy"}]}))
    pool_connection(gw.worker, "t0")
    gw.send(GET)
    gw.respond(response(200, b"fine"))
    assert gw.received().startswith(b"HTTP/1.1 200 ")
