"""Values from the API are shown as they are, never interpreted as Rich markup."""

from __future__ import annotations

import pytest

from tollgate import render


def test_bracketed_values_survive_tables_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    render.stdout().print(
        render.table([{"host": "[::1]", "methods": ["GET"], "max": None}], ["host", "methods", "max"])
    )
    render.error("409 Conflict: cannot delete api a / route /x [GET]: [bold]nope")
    out = capsys.readouterr()
    assert "[::1]" in out.out and "GET" in out.out and "-" in out.out
    assert "route /x [GET]: [bold]nope" in out.err
