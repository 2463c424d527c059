"""The path-template grammar: the one place that says what a route template and a base path are.

A route template is ``/`` followed by segments separated by ``/``::

    template  = "/" segment *( "/" segment )
    segment   = literal | "{" name "}" | "{" name "+}"      ; "{name+}" (greedy) only as the last segment
    name      = [A-Za-z_] [A-Za-z0-9_]*                     ; unique within the template
    literal   = 1*( unreserved | sub-delims | ":" | "@" | "%" ) ; RFC 3986 pchar, no "{" / "}"

The last segment may be empty: a trailing slash is significant (``/a/`` is not ``/a``), and ``/``
itself is one empty segment.  A base path is ``/`` or ``/`` and literal segments, stored without
its trailing slash.  The snapshot parser, the control plane's schemas and the router all read
templates through this module (the router classifies segments with :func:`parse_template` when it
compiles a snapshot; matching requests against the compiled trie stays in ``router.py``).

Literal segments are taken as written; the router compares them in canonical form
(``data_plane.http.canonical.canonical_template``, applied before :func:`parse_template`), which
keeps this module a stdlib leaf.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from data_plane.errors import SnapshotError

_PARAM_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
_LITERAL_RE = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]+$")

# Segment kinds.
LITERAL = "literal"
PARAM = "param"  # one non-empty segment
GREEDY = "greedy"  # one or more remaining segments (AWS API Gateway's {proxy+})


class Segment(NamedTuple):
    """One segment of a template.  A NamedTuple rather than a frozen dataclass: the router parses every
    route of a snapshot at compile time, and building these was a third slower as dataclasses."""

    kind: str  # LITERAL, PARAM or GREEDY
    text: str  # the literal as written ("" for a trailing slash), or the parameter's name


# Kept per template (immutable results): parsing the snapshot, checking an API's templates for
# shapes that conflict and building the router each parse every template, and a route delta carries
# its whole API (at 10,000 routes, ~30,000 parses per route change, nearly all of unchanged ones).
@functools.lru_cache(maxsize=1 << 16)
def parse_template(template: str) -> tuple[Segment, ...]:
    """The segments of a route template after its leading ``/``; raises :class:`SnapshotError`.

    ``/`` is one empty literal segment, as is the last one of ``/a/``: the segments a request path
    splits into (``path[1:].split("/")``) line up with these one for one.
    """
    if not template.startswith("/"):
        raise SnapshotError(f"path template {template!r} must start with '/'")
    raw = template[1:].split("/")
    last = len(raw) - 1
    segments = []
    for i, seg in enumerate(raw):
        m = _PARAM_RE.match(seg)
        if m:
            if m.group(2) and i != last:
                raise SnapshotError(f"path template {template!r}: greedy parameter must be the last segment")
            segments.append(Segment(GREEDY if m.group(2) else PARAM, m.group(1)))
            continue
        if not (seg == "" and i == last):  # a trailing slash is significant and allowed
            if not _LITERAL_RE.match(seg) or "{" in seg or "}" in seg:
                raise SnapshotError(f"path template {template!r}: invalid segment {seg!r}")
        segments.append(Segment(LITERAL, seg))
    names = [s.text for s in segments if s.kind != LITERAL]
    if len(names) != len(set(names)):
        raise SnapshotError(f"path template {template!r}: duplicate parameter name")
    return tuple(segments)


def split_template(path: str) -> list[str]:
    """Validate a route path template and return its segments as written (no leading empty segment;
    ``[]`` for ``/``)."""
    parse_template(path)
    return [] if path == "/" else path[1:].split("/")


def template_shape(template: str) -> tuple[str, ...]:
    """The template with parameter names erased (``{}``, ``{+}``): what decides which request paths
    it matches, so two templates of one API with the same shape conflict.  ``()`` for ``/``."""
    segments = parse_template(template)
    if template == "/":
        return ()
    return tuple(_SHAPE.get(s.kind, s.text) for s in segments)


_SHAPE = {PARAM: "{}", GREEDY: "{+}"}


def param_names(template: str) -> list[str]:
    """The template's parameter names, in order (a greedy one included)."""
    return [s.text for s in parse_template(template) if s.kind != LITERAL]


def normalize_base_path(path: str) -> str:
    """'/orders/' -> '/orders'; '/' -> '/'; raises :class:`SnapshotError` (``''`` included: no leading '/')."""
    if not path.startswith("/"):
        raise SnapshotError(f"base path {path!r} must start with '/'")
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    for seg in stripped[1:].split("/"):
        if not seg or not _LITERAL_RE.match(seg) or "{" in seg:
            raise SnapshotError(f"base path {path!r}: invalid segment {seg!r}")
    return stripped
