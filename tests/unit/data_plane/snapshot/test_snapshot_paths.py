"""The path-template grammar (data_plane/snapshot/paths.py): templates and base paths accepted and refused."""

from __future__ import annotations

import re

import pytest

from data_plane.snapshot import (
    Segment,
    SnapshotError,
    normalize_base_path,
    param_names,
    parse_template,
    split_template,
    template_shape,
)
from data_plane.snapshot.paths import GREEDY, LITERAL, PARAM


@pytest.mark.parametrize(
    ("template", "segments"),
    [
        ("/", [(LITERAL, "")]),  # one empty segment, as the request path "/" splits
        ("/items", [(LITERAL, "items")]),
        ("/items/", [(LITERAL, "items"), (LITERAL, "")]),  # a trailing slash is significant
        ("/items/{id}", [(LITERAL, "items"), (PARAM, "id")]),
        ("/{proxy+}", [(GREEDY, "proxy")]),
        ("/a/{x}/b/{_y2+}", [(LITERAL, "a"), (PARAM, "x"), (LITERAL, "b"), (GREEDY, "_y2")]),
        (
            "/v1.2/~u/a%20b/:@!$&'()*+,;=",
            [(LITERAL, "v1.2"), (LITERAL, "~u"), (LITERAL, "a%20b"), (LITERAL, ":@!$&'()*+,;=")],
        ),
    ],
)
def test_accepted_templates_and_their_segments(template: str, segments: list[tuple[str, str]]) -> None:
    assert parse_template(template) == tuple(Segment(kind, text) for kind, text in segments)
    # split_template: the same check, the segments as written (and none for "/")
    assert split_template(template) == ([] if template == "/" else template[1:].split("/"))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("items", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a//b", "invalid segment ''"),
        ("//", "invalid segment ''"),
        ("/{rest+}/x", "greedy parameter must be the last segment"),
        ("/{a+}/{b+}", "greedy parameter must be the last segment"),
        ("/{a}/{a}", "duplicate parameter name"),
        ("/{a}/{a+}", "duplicate parameter name"),
        ("/a{b}", "invalid segment 'a{b}'"),
        ("/{b}c", "invalid segment '{b}c'"),
        ("/{1x}", "invalid segment '{1x}'"),
        ("/{}", "invalid segment '{}'"),
        ("/{a-b}", "invalid segment '{a-b}'"),
        ("/a b", "invalid segment 'a b'"),
        ("/caf\u00e9", "invalid segment"),
        ("/a?b", "invalid segment 'a?b'"),
    ],
)
def test_refused_templates_name_the_reason(template: str, message: str) -> None:
    for parse in (parse_template, split_template):
        with pytest.raises(SnapshotError, match=re.escape(message)):
            parse(template)


def test_the_first_invalid_segment_is_reported_before_duplicate_names() -> None:
    with pytest.raises(SnapshotError, match="invalid segment 'a b'"):
        parse_template("/{a}/{a}/a b")


def test_shape_erases_parameter_names_but_keeps_greedy_apart() -> None:
    assert template_shape("/a/{x}/b") == template_shape("/a/{y}/b") == ("a", "{}", "b")
    assert template_shape("/a/{x+}") == ("a", "{+}") != template_shape("/a/{x}")
    assert template_shape("/a/") == ("a", "") != template_shape("/a")
    assert template_shape("/") == ()
    with pytest.raises(SnapshotError):
        template_shape("/{x+}/a")


def test_param_names_in_order() -> None:
    assert param_names("/a/{x}/b/{rest+}") == ["x", "rest"]
    assert param_names("/a/b") == []


@pytest.mark.parametrize(
    ("path", "normal"),
    [("/", "/"), ("//", "/"), ("/orders", "/orders"), ("/orders/", "/orders"), ("/a/b.c/~d//", "/a/b.c/~d")],
)
def test_base_paths_are_normalised(path: str, normal: str) -> None:
    assert normalize_base_path(path) == normal


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "must start with '/'"),
        ("orders", "must start with '/'"),
        ("/a//b", "invalid segment ''"),
        ("/a/{x}", "invalid segment '{x}'"),  # a base path has literal segments only
        ("/a b", "invalid segment 'a b'"),
    ],
)
def test_refused_base_paths(path: str, message: str) -> None:
    with pytest.raises(SnapshotError, match=re.escape(message)):
        normalize_base_path(path)
