"""The two plugins shipped with Tollgate, on plain request views: request-size-by-customer and ab-split."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from data_plane.policies.plugin_registry import PluginRegistry
from tollgate.plugins import Refusal, RequestView
from tollgate.plugins.builtin.ab_split import AbSplit
from tollgate.plugins.builtin.request_size import RequestSizeByCustomer


def _view(
    customer: str | None = None,
    plan: str | None = None,
    length: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    ip: bytes = b"10.0.0.1",
) -> RequestView:
    return RequestView("POST", "/x", b"", headers or [], ip, customer, plan, "r", "a", b"rid", length)


def _registry() -> PluginRegistry:
    return PluginRegistry.of(RequestSizeByCustomer, AbSplit)


# ---------------------------------------------------------------- request-size-by-customer

SIZES = {"default": 100, "anonymous": 10, "plans": {"gold": 1000}, "customers": {"vip": None, "tiny": 5}}


@pytest.mark.parametrize(
    ("customer", "plan", "limit"),
    [(None, None, 10), ("c", None, 100), ("c", "gold", 1000), ("c", "silver", 100), ("vip", "gold", None)]
    + [("tiny", "gold", 5)],
)
def test_the_limit_is_the_customers_then_the_plans_then_the_default(
    customer: str | None, plan: str | None, limit: int | None
) -> None:
    p = RequestSizeByCustomer(SIZES)
    assert p.limit_for(customer, plan) == limit
    if limit is None:
        assert p.on_request(_view(customer, plan, 10**9)) is None
        return
    assert p.on_request(_view(customer, plan, limit)) is None  # at the limit: admitted
    refused = p.on_request(_view(customer, plan, limit + 1))
    assert isinstance(refused, Refusal) and refused.status == 413
    assert f"{limit} bytes" in refused.message


def test_no_declared_length_passes_unless_a_length_is_required() -> None:
    chunked = [(b"transfer-encoding", b"chunked")]
    assert RequestSizeByCustomer({"default": 1}).on_request(_view("c", headers=chunked)) is None
    strict = RequestSizeByCustomer({"default": 1, "require_length": True})
    refused = strict.on_request(_view("c", headers=chunked))
    assert refused is not None and refused.status == 411
    assert strict.on_request(_view("c")) is None  # no body at all
    assert RequestSizeByCustomer({}).on_request(_view("c", length=10**9)) is None  # no limit configured


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"default": -1}, "$.default"),
        ({"customers": {"c": "big"}}, "$.customers.c"),
        ({"plans": []}, "$.plans"),
        ({"defualt": 1}, "$"),  # a typo is not silently ignored
    ],
)
def test_request_size_schema_refuses_bad_configs(config: dict[str, Any], path: str) -> None:
    problems = _registry().validate("request-size-by-customer", config)
    assert problems and problems[0][0] == path, problems


# ---------------------------------------------------------------- ab-split

SPLIT = {"variants": [{"name": "a", "weight": 70}, {"name": "b", "weight": 30}], "sticky_header": "x-user-id"}


def _variant(p: AbSplit, view: RequestView) -> str:
    assert p.on_request(view) is None
    assert view._upstream is not None
    ((name, value),) = view._upstream
    assert name == b"x-ab-variant"
    return value.decode()


def test_a_caller_keeps_its_variant_and_the_weights_hold_over_many() -> None:
    p = AbSplit(SPLIT)
    first = [_variant(p, _view(headers=[(b"x-user-id", b"user-%d" % i)])) for i in range(2000)]
    again = [_variant(AbSplit(SPLIT), _view(headers=[(b"x-user-id", b"user-%d" % i)])) for i in range(2000)]
    assert first == again  # sticky, and the same on another instance (another worker, a new snapshot)
    share = Counter(first)["a"] / len(first)
    assert 0.65 < share < 0.75, share


def test_the_key_is_the_sticky_header_then_the_customer_then_the_address() -> None:
    p = AbSplit(SPLIT)
    by_header = _variant(p, _view(customer="c9", headers=[(b"x-user-id", b"u1")]))
    assert by_header == p.pick("u1")
    assert _variant(p, _view(customer="c9")) == p.pick("customer:c9")
    assert _variant(p, _view(ip=b"192.0.2.4")) == p.pick("ip:192.0.2.4")


def test_the_salt_deals_callers_again() -> None:
    keys = [f"u{i}" for i in range(200)]
    one = [AbSplit(SPLIT).pick(k) for k in keys]
    other = [AbSplit({**SPLIT, "salt": "experiment-2"}).pick(k) for k in keys]
    assert one != other


def test_the_override_header_forces_a_known_variant_only() -> None:
    p = AbSplit(
        {**SPLIT, "override_header": "x-ab-force", "variants": [*SPLIT["variants"], {"name": "c", "weight": 0}]}
    )
    assert _variant(p, _view(headers=[(b"x-ab-force", b"c")])) == "c"  # weight 0: only by override
    natural = _variant(p, _view(headers=[(b"x-user-id", b"u1")]))
    forged = _variant(p, _view(headers=[(b"x-user-id", b"u1"), (b"x-ab-force", b"nope")]))
    assert forged == natural
    assert all(_variant(p, _view(headers=[(b"x-user-id", b"u%d" % i)])) != "c" for i in range(300))


def test_the_variant_can_be_told_to_the_client_under_another_name() -> None:
    p = AbSplit({**SPLIT, "header": "X-Experiment", "response_header": True})
    v = _view(headers=[(b"x-user-id", b"u1")])
    assert p.on_request(v) is None
    assert v._upstream == [(b"x-experiment", p.pick("u1").encode())]
    assert v._response == v._upstream


@pytest.mark.parametrize(
    "config",
    [
        {"variants": [{"name": "a", "weight": 0}]},  # nothing to pick
        {"variants": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]},  # twice the same name
        {"variants": [{"name": "a", "weight": 1}], "header": "x-forwarded-for"},  # the gateway's header
    ],
)
def test_ab_split_refuses_what_the_schema_cannot_say(config: dict[str, Any]) -> None:
    assert _registry().validate("ab-split", config) == []
    with pytest.raises(ValueError):
        AbSplit(config)


def test_ab_split_schema() -> None:
    registry = _registry()
    assert registry.validate("ab-split", SPLIT) == []
    assert registry.validate("ab-split", {})[0] == ("$", "'variants' is a required property")
    path, _ = registry.validate("ab-split", {"variants": [{"name": "a b", "weight": 1}]})[0]
    assert path == "$.variants[0].name"
