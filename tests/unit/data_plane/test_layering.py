"""The data plane is deployable alone: importing it must not pull in the control plane or its stack."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("control_plane", "fastapi", "sqlalchemy", "pydantic", "alembic", "starlette")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {m.split(".")[0] for m in out.split()}


def test_data_plane_imports_nothing_of_the_control_plane() -> None:
    loaded = _modules_after("import data_plane.server, data_plane.sync, data_plane.compiler")
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_snapshot_contract_is_a_stdlib_leaf() -> None:
    loaded = _modules_after("import data_plane.snapshot")
    assert not loaded & {"httptools", "uvloop", "httpx", *FORBIDDEN}


def test_worker_command_does_not_import_the_control_plane() -> None:
    code = (
        "import sys; from unittest import mock\n"
        "import tollgate.cli as cli\n"
        "with mock.patch('data_plane.server.run_worker') as run:\n"
        "    sys.argv = ['tollgate', 'worker', '--snapshot', '/nonexistent.json']\n"
        "    try:\n"
        "        cli.main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    assert run.called\n"
    )
    loaded = _modules_after(code)
    # pydantic is allowed here only because Typer (the CLI library) uses it to parse options.
    forbidden = set(FORBIDDEN) - {"pydantic"}
    assert not loaded & forbidden, loaded & forbidden
