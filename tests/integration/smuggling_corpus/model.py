"""The corpus's vocabulary: a :class:`Case` (raw bytes, source, acceptable :class:`Outcome` s), the
outcome builders, and the request builders the case modules write their bytes with."""

from __future__ import annotations

from dataclasses import dataclass

HEADER_TIMEOUT = 1.0  # the corpus worker's TOLLGATE_HEADER_TIMEOUT: the incomplete-head cases wait for it
BODY_TIMEOUT = 1.0  # TOLLGATE_BODY_TIMEOUT for the body timeout the lead is adding (408 for a body never sent)
SMALL_LIMIT = 16  # max_body_bytes of the /small API


@dataclass(frozen=True)
class Outcome:
    """One acceptable result: the statuses of the responses in order, whether the worker must close
    the connection after the last one, how many requests the backend completes, and checks on the
    backend's JSON answer to the last forwarded request (``path``, ``received``, ``header:<name>``
    with the value it saw, or None for a field it must not have seen)."""

    statuses: tuple[frozenset[int], ...]
    close: bool
    forwarded: int
    checks: tuple[tuple[str, object], ...] = ()
    streamed: bool = False  # the head may have reached the backend before the refusal (bodies stream)


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    raw: bytes
    source: str
    outcomes: tuple[Outcome, ...]
    within: float = 3.0  # seconds for the whole exchange; a hang fails here


def refused(*status: int, streamed: bool = False) -> Outcome:
    return Outcome((frozenset(status or (400,)),), close=True, forwarded=0, streamed=streamed)


def forwarded(
    *, path: str | None = None, received: int | None = None, fields: dict[str, str | None] | None = None
) -> Outcome:
    """Answered 200 by the backend, which saw ``path``, ``received`` body bytes, and each of ``fields``
    with that value (None: the backend must not have seen the field)."""
    checks: list[tuple[str, object]] = []
    if path is not None:
        checks.append(("path", path))
    if received is not None:
        checks.append(("received", received))
    checks += ((f"header:{name}", value) for name, value in (fields or {}).items())
    return Outcome((frozenset({200}),), close=False, forwarded=1, checks=tuple(checks))


def sequence(*statuses: int, forwarded: int, close: bool) -> Outcome:
    """Pipelined requests: one response per status, in order."""
    return Outcome(tuple(frozenset({s}) for s in statuses), close=close, forwarded=forwarded)


def cut() -> tuple[Outcome, ...]:
    return (Outcome((), close=True, forwarded=0), refused(408))


# ----------------------------------------------------------------------------- request builders

H = b"host: t\r\n"  # the /h API answers any host


def post(fields: bytes, body: bytes = b"", target: bytes = b"/h/x", version: bytes = b"1.1") -> bytes:
    """A POST with a Host field, then ``fields`` (each ending in CRLF), the blank line and ``body``."""
    return b"POST " + target + b" HTTP/" + version + b"\r\n" + H + fields + b"\r\n" + body


def get(fields: bytes = b"", target: bytes = b"/h/x", version: bytes = b"1.1", host: bytes = H) -> bytes:
    return b"GET " + target + b" HTTP/" + version + b"\r\n" + host + fields + b"\r\n"


CL5 = b"content-length: 5\r\n"
TE = b"transfer-encoding: chunked\r\n"
LAST = b"0\r\n\r\n"
HELLO_CHUNKED = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /h/smuggled HTTP/1.1\r\nhost: t\r\n\r\n"


def chunked(body: bytes) -> bytes:
    """A chunked POST to /h/upload (the backend answers how many body bytes it got)."""
    return post(TE, body, target=b"/h/upload")


def te(value: bytes, *, with_cl: bool = True) -> bytes:
    """A POST whose Transfer-Encoding line is ``value`` (name, colon and all), with a Content-Length
    unless told otherwise: PortSwigger's probe shape, where the two framings disagree."""
    return post((CL5 if with_cl else b"") + value + b"\r\n", LAST)


# ----------------------------------------------------------------------------- cases


def case(name: str, category: str, raw: bytes, source: str, *outcomes: Outcome | tuple[Outcome, ...]) -> Case:
    """A case; with no outcome given it must be refused with 400."""
    flat: list[Outcome] = []
    for o in outcomes:
        flat.extend(o if isinstance(o, tuple) else (o,))
    return Case(name, category, raw, source, tuple(flat) or (refused(),))


def slow(name: str, category: str, raw: bytes, source: str, *outcomes: Outcome) -> Case:
    """A case that waits for a worker timer: given the time of that timer plus slack."""
    return Case(name, category, raw, source, outcomes, within=HEADER_TIMEOUT + 3.0)
