"""The generated SDK's code is rewritten to run on Python 3.9 (control_plane/openapi/py39.py)."""

from __future__ import annotations

import ast

from control_plane.openapi.py39 import backport_module, problems

GENERATED_311 = '''"""Contains some shared types for properties"""

from collections.abc import Mapping
from typing import IO, Any, Self

FileContent = IO[bytes] | bytes | str
FileTypes = (
    # (filename, file (or bytes), content_type)
    tuple[str | None, FileContent, str | None]
    | tuple[str | None, FileContent, str | None, Mapping[str, str]]
)


class Client:
    def set_httpx_client(self, client: Any) -> Self:
        return self


def parse(data: object, verbose: bool | None = None) -> int | str | None:
    if isinstance(data, int | str):
        return data
    return None
'''


def test_3_11_code_is_found_out() -> None:
    found = problems(GENERATED_311, "types.py")
    assert any("IO[bytes] | bytes | str evaluated at run time" in p for p in found)
    assert any("typing.Self is newer than 3.9" in p for p in found)
    assert any("in an annotation without from __future__ import annotations" in p for p in found)
    (match,) = problems("match x:\n    case 1:\n        pass\n")
    assert "syntax newer than Python 3.9: Pattern matching" in match


def test_the_backport_leaves_nothing_newer_than_3_9_and_keeps_the_meaning() -> None:
    out = backport_module(GENERATED_311)
    assert problems(out, "types.py") == []
    assert ast.parse(out, feature_version=(3, 9))
    assert out.index('"""Contains some shared types') < out.index("from __future__ import annotations")
    assert "FileContent = Union[IO[bytes], bytes, str]" in out
    assert "isinstance(data, (int, str))" in out
    assert "from typing_extensions import Self" in out and "from typing import IO, Any, Union" in out
    assert "# The types" not in out or "(filename" in out  # comments outside rewritten expressions stay
    namespace: dict[str, object] = {}
    exec(compile(out, "types.py", "exec"), namespace)  # and it still runs (here, on 3.11)
    parse = namespace["parse"]
    assert callable(parse) and parse(3) == 3 and parse(b"x") is None
    assert backport_module(out) == out  # idempotent
