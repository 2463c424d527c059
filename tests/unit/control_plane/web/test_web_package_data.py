"""Every template and static file of control_plane/web is shipped by a non-editable install
(pyproject's package-data), and nothing in them names another host (offline: no CDN, no web font)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
WEB = ROOT / "control_plane" / "web"


def test_package_data_covers_every_web_asset() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "control_plane.web"
    ]
    files = [
        p.relative_to(WEB).as_posix() for d in ("static", "templates") for p in (WEB / d).rglob("*") if p.is_file()
    ]
    assert files
    missing = [
        f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)
    ]
    assert not missing, f"not shipped by package-data: {missing}"


def test_our_templates_and_scripts_load_nothing_from_another_host() -> None:
    ours = [*(WEB / "templates").rglob("*.html"), *(WEB / "static").glob("*.js"), *(WEB / "static").glob("*.css")]
    for path in ours:
        text = path.read_text()
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", text), path
        assert "@import" not in text and "url(http" not in text, path
