"""Values from the API are shown as they are, never interpreted as Rich markup."""

from __future__ import annotations

import pytest

from tollgate import render


def test_bracketed_values_survive_tables_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    render.stdout().print(
        render.table(
            [{"host": "[::1]", "methods": ["GET"], "max": None}, {"host": "b", "methods": [], "max": 1}],
            ["host", "methods", "max"],
        )
    )
    render.error("409 Conflict: cannot delete api a / route /x [GET]: [bold]nope")
    out = capsys.readouterr()
    assert "[::1]" in out.out and "GET" in out.out and "-" in out.out
    assert "route /x [GET]: [bold]nope" in out.err


def test_nested_values_are_readable_and_empty_columns_are_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"name": "gold", "throttle": {"rate": 20, "burst": 40}, "quota": {"limit": 5, "hard_cap": None}, "key": None}
    ]
    render.stdout().print(render.table(rows, ["name", "throttle", "quota", "key"]))
    out = capsys.readouterr().out
    assert "rate=20, burst=40" in out and "limit=5" in out
    assert "{" not in out and "hard_cap" not in out  # no dict repr, no null members
    assert "key" not in out  # empty in every row: no column
