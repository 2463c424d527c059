"""The request-smuggling and parser corpus: raw requests, where each comes from, and what the worker
must do with it (``tests/integration/test_smuggling_corpus.py`` replays them through a real worker).

Sources, read with the search tool and written here as our own byte strings:

* **llhttp** ``test/request/*.md`` (nodejs/llhttp): what the parser under us accepts and refuses.
  A case llhttp accepts is only safe for us if the worker then re-frames it unambiguously.
* **HTTP Garden** ``TROPHIES.md`` (narfindustries/http-garden): "server bug N" / "transducer bug N"
  are the numbered findings there; a transducer is what we are (we parse and re-send).
* **PortSwigger desync** (PortSwigger/http-request-smuggler ``src/burp/DesyncBox.java``): the
  Transfer-Encoding / Content-Length permutations, named as there (``vanilla``, ``nameprefix1``...).
* **Peers**: nginx-tests (``http_host.t``, ``ignore_invalid_headers.t``,
  ``http_expect_100_continue.t``), Envoy's ``test/common/http/http1/codec_impl_test.cc``, HAProxy's
  reg-tests, Apache httpd.

Expectations (``model.py``; RFC 9112/9110 where a peer and the RFC agree, docs/architecture.md
"HTTP/1.1 correctness" for our own choices):

* ``refused(status)`` — the worker answers the status (400 unless a limit says 413/414/431), says
  ``connection: close`` and closes, within the case's time; the backend never sees a byte of it.
* ``forwarded(checks)`` — valid-but-unusual input that peers accept: the backend answers 200 (the
  controls that show the corpus does not over-refuse), with checks on what the backend saw (its
  path, body bytes, fields).
* ``sequence(...)`` — pipelined requests: the statuses in order and how many reached the backend.
* ``cut()`` — an incomplete head: closed within the header timeout, answered with nothing or a
  408, nothing at the backend.
* A case may accept more than one outcome where refusing and normalising are both safe (a
  leading-zero Content-Length: refused, or forwarded with the canonical value).

Every case must pass: there is no list of known failures (a case added for a new finding is fixed
in the same change).
"""

from __future__ import annotations

from tests.integration.smuggling_corpus import body_length, flow, message, transfer_encoding
from tests.integration.smuggling_corpus.model import BODY_TIMEOUT, HEADER_TIMEOUT, SMALL_LIMIT, Case, Outcome

__all__ = [
    "BODY_TIMEOUT",
    "BY_NAME",
    "CASES",
    "HEADER_TIMEOUT",
    "SMALL_LIMIT",
    "Case",
    "Outcome",
]

CASES: list[Case] = [*transfer_encoding.CASES, *body_length.CASES, *message.CASES, *flow.CASES]

BY_NAME = {c.name: c for c in CASES}
