from __future__ import annotations

import pytest

from data_plane.http.canonical import canonical_host
from data_plane.router import NotFound, Router
from data_plane.snapshot import Api, Route, SnapshotError


def api(name: str, base: str = "/", routes: list[tuple[str, tuple[str, ...]]] = (), hosts: tuple[str, ...] = ()) -> Api:
    return Api(
        id=name,
        name=name,
        base_path=base,
        hosts=hosts,
        routes=tuple(Route(id=f"{name}:{p}:{','.join(m)}", path=p, upstream_id="u", methods=m) for p, m in routes),
    )


def router(*apis: Api) -> Router[str]:
    return Router(apis, lambda a, r: r.id)


def hit(r: Router[str], method: str, path: str, host: str = "example.com") -> tuple[str, str]:
    found = r.match(host, method, path)
    assert not isinstance(found, NotFound), f"{method} {path} did not match"
    return found


def test_literal_beats_param_beats_greedy() -> None:
    r = router(api("a", "/", [("/items/new", ()), ("/items/{id}", ()), ("/{proxy+}", ())]))
    assert hit(r, "GET", "/items/new")[0] == "a:/items/new:"
    assert hit(r, "GET", "/items/42")[0] == "a:/items/{id}:"
    assert hit(r, "GET", "/items/42/more")[0] == "a:/{proxy+}:"
    assert hit(r, "GET", "/other")[0] == "a:/{proxy+}:"


def test_backtracks_from_literal_to_param() -> None:
    r = router(api("a", "/", [("/items/new/edit", ()), ("/items/{id}/view", ())]))
    assert hit(r, "GET", "/items/new/view")[0] == "a:/items/{id}/view:"


def test_base_path_is_stripped_and_matched_on_segment_boundary() -> None:
    r = router(api("orders", "/orders", [("/items/{id}", ()), ("/", ())]))
    assert hit(r, "GET", "/orders/items/1") == ("orders:/items/{id}:", "/items/1")
    assert hit(r, "GET", "/orders") == ("orders:/:", "/")
    assert hit(r, "GET", "/orders/") == ("orders:/:", "/")
    assert isinstance(r.match("h", "GET", "/ordersx/items/1"), NotFound)


def test_longest_base_path_owns_the_request() -> None:
    r = router(api("root", "/", [("/{proxy+}", ())]), api("v2", "/api/v2", [("/ping", ())]))
    assert hit(r, "GET", "/api/v2/ping")[0] == "v2:/ping:"
    assert hit(r, "GET", "/api/v1/ping")[0] == "root:/{proxy+}:"
    # No fall-through to a shorter base path once an API claimed the prefix.
    assert r.match("h", "GET", "/api/v2/other").allow == ()  # type: ignore[union-attr]


def test_method_mismatch_gives_405_with_allow_and_any_method_routes() -> None:
    r = router(api("a", "/", [("/items/{id}", ("GET", "PUT")), ("/items", ("POST",))]))
    found = r.match("h", "DELETE", "/items/1")
    assert isinstance(found, NotFound) and found.allow == ("GET", "HEAD", "PUT")
    assert hit(r, "HEAD", "/items/1")[0] == "a:/items/{id}:GET,PUT"  # GET answers HEAD
    found = r.match("h", "GET", "/items")
    assert isinstance(found, NotFound) and found.allow == ("POST",)
    missing = r.match("h", "GET", "/nothing")
    assert isinstance(missing, NotFound) and missing.allow == ()


def test_method_specific_route_falls_back_to_less_specific_path() -> None:
    r = router(api("a", "/", [("/items/{id}", ("GET",)), ("/{proxy+}", ("DELETE",))]))
    assert hit(r, "DELETE", "/items/3")[0] == "a:/{proxy+}:DELETE"


def test_greedy_needs_at_least_one_segment_and_param_not_empty() -> None:
    r = router(api("a", "/files", [("/{path+}", ())]), api("b", "/u", [("/{id}/x", ())]))
    assert hit(r, "GET", "/files/a/b/c.txt") == ("a:/{path+}:", "/a/b/c.txt")
    assert isinstance(r.match("h", "GET", "/files"), NotFound)
    assert isinstance(r.match("h", "GET", "/u//x"), NotFound)


def test_hosts_exact_then_wildcard_then_any() -> None:
    r = router(
        api("exact", "/", [("/{p+}", ())], hosts=("api.example.com",)),
        api("wild", "/", [("/{p+}", ())], hosts=("*.example.com",)),
        api("any", "/", [("/{p+}", ())]),
    )
    assert hit(r, "GET", "/x", "api.example.com")[0].startswith("exact")
    assert hit(r, "GET", "/x", canonical_host(b"API.example.com:8000") or "")[0].startswith("exact")
    assert hit(r, "GET", "/x", "eu.example.com")[0].startswith("wild")
    assert hit(r, "GET", "/x", "other.org")[0].startswith("any")
    assert hit(r, "GET", "/x", "")[0].startswith("any")


def test_host_group_without_matching_base_path_falls_to_any_host() -> None:
    r = router(api("exact", "/admin", [("/{p+}", ())], hosts=("a.test",)), api("any", "/", [("/{p+}", ())]))
    assert hit(r, "GET", "/public/x", "a.test")[0].startswith("any")
    assert hit(r, "GET", "/admin/x", "a.test")[0].startswith("exact")


def test_duplicate_route_in_snapshot_is_refused() -> None:
    with pytest.raises(ValueError, match="two routes"):
        router(api("a", "/", [("/x/{a}", ("GET",)), ("/x/{b}", ("GET",))]))


def test_trailing_slash_is_significant() -> None:
    r = router(api("a", "/", [("/items/", ()), ("/items", ("POST",))]))
    assert hit(r, "GET", "/items/")[0] == "a:/items/:"
    assert isinstance(r.match("h", "GET", "/items"), NotFound)


@pytest.mark.parametrize("template", ["/{rest+}/x", "/a//b", "/{a}/{a}", "/{1x}"])
def test_templates_are_read_with_the_snapshot_grammar(template: str) -> None:
    # The router does not parse '{...}' itself (data_plane/snapshot/paths.py does): a template the
    # snapshot parser would refuse is refused when the table is compiled, never half-built.
    with pytest.raises(SnapshotError, match="path template"):
        router(api("a", "/", [(template, ())]))
