"""The admin CLI right after `make up`: the token `tollgate up` wrote is read, a missing token and a
wrong one get different messages with a way out, and global options work before the command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.integration.harness import Cluster, ControlPlane
from tollgate.cli import app


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


def run(*args: str, **env: str | None) -> Result:
    base: dict[str, str | None] = {"TOLLGATE_ADMIN_TOKEN": None, "TOLLGATE_ADMIN_URL": None, "TOLLGATE_DATA_DIR": None}
    return CliRunner().invoke(app, list(args), env={**base, **env})


def test_the_token_file_of_the_data_dir_is_read_when_no_token_is_given(cp: ControlPlane, tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text(cp.admin_token + "\n")
    result = run("upstreams", "list", "-o", "json", TOLLGATE_ADMIN_URL=cp.url, TOLLGATE_DATA_DIR=str(tmp_path))
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), list)


def test_no_token_and_a_wrong_token_are_told_apart(cp: ControlPlane, tmp_path: Path) -> None:
    none = run("upstreams", "list", TOLLGATE_ADMIN_URL=cp.url, TOLLGATE_DATA_DIR=str(tmp_path))
    assert none.exit_code == 1
    assert "admin token required (none was sent)" in none.stderr
    assert "--token" in none.stderr and str(tmp_path / "admin-token") in none.stderr

    wrong = run("upstreams", "list", "--token", "not-the-token", TOLLGATE_ADMIN_URL=cp.url)
    assert wrong.exit_code == 1
    assert "invalid admin token" in wrong.stderr and "came from --token" in wrong.stderr
    assert "not-the-token" not in wrong.stderr  # a token is never echoed


def test_global_options_before_the_command(cp: ControlPlane) -> None:
    made = run("--url", cp.url, "--token", cp.admin_token, "upstreams", "create", "name=first-use")
    assert made.exit_code == 0, made.output
    result = run("--url", cp.url, "--token", cp.admin_token, "-o", "json", "upstreams", "list")
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), list)
    # an option after the command still wins over the one before it
    result = run("-o", "json", "--url", cp.url, "--token", cp.admin_token, "upstreams", "list", "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("- id: ")
    # dump has yaml|json: a global -o json applies; -o table is not its format and is left alone
    dumped = run("-o", "json", "--url", cp.url, "--token", cp.admin_token, "dump")
    assert dumped.exit_code == 0, dumped.output and json.loads(dumped.stdout)["version"] == 1
    assert run("-o", "table", "--url", cp.url, "--token", cp.admin_token, "dump").exit_code == 0
