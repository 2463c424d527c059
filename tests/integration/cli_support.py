"""Running the ``tollgate`` admin CLI in-process against a real control plane (shared by the CLI tests)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from tests.integration.harness import ControlPlane
from tollgate.cli import app


def tg(cp: ControlPlane, *args: str) -> Result:
    """``tollgate ARGS`` with the control plane's URL and admin token in the environment."""
    return CliRunner().invoke(
        app, list(args), env={"TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token}
    )


def ok_json(cp: ControlPlane, *args: str) -> Any:
    """``tollgate ARGS --output json``, which must succeed; the parsed output."""
    result = tg(cp, *args, "--output", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
