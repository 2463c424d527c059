"""The data plane is deployable alone: importing it must not pull in the control plane or its stack."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("control_plane", "fastapi", "sqlalchemy", "pydantic", "alembic", "starlette")


def _loaded_after(code: str) -> set[str]:
    """The full names of the modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split())


def _modules_after(code: str) -> set[str]:
    return {m.split(".")[0] for m in _loaded_after(code)}


def test_data_plane_imports_nothing_of_the_control_plane() -> None:
    loaded = _modules_after("import data_plane.server, data_plane.sync, data_plane.compiler")
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_snapshot_contract_is_a_stdlib_leaf() -> None:
    loaded = _modules_after("import data_plane.snapshot")
    assert not loaded & {"httptools", "uvloop", "httpx", *FORBIDDEN}


def test_snapshot_contract_imports_only_the_stdlib_and_data_plane_errors() -> None:
    # Stricter than the test above: nothing third-party at all, and of ours only the package init
    # (with native.py, stdlib only), errors.py and the snapshot package itself; in particular not
    # data_plane.http (compiled), whose canonical_template the router applies before paths.parse_template.
    loaded = _loaded_after("import data_plane.snapshot") - _loaded_after("")
    ours = {m for m in loaded if m.split(".")[0] == "data_plane"}
    # data_plane._native__mypyc: the one compiled library, loaded for snapshot/keys.py (the key-table
    # loop); loading it imports none of the modules it holds
    allowed = {"data_plane", "data_plane.native", "data_plane.errors", "data_plane._native__mypyc"}
    assert {m for m in ours if m not in allowed and not m.startswith("data_plane.snapshot")} == set()
    foreign = {m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names) - {"data_plane"}
    assert foreign == set(), foreign


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
