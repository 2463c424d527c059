"""data_plane/policies/plugin_registry.py: discovery through entry points, what makes a plugin unusable,
and the account of hook failures (count, rate-limited traceback)."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from data_plane.errors import PluginUnavailable
from data_plane.policies.plugin_registry import LOG_INTERVAL, PluginRegistry
from tollgate.plugins import API_VERSION, Plugin
from tollgate.plugins.builtin.ab_split import AbSplit


def install(
    root: Path, dist: str, module: str, source: str, entry_points: dict[str, str], version: str = "2.3.4"
) -> None:
    """A distribution as pip leaves it in site-packages: a module and its ``.dist-info``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[tollgate.plugins]\n{lines}")


GOOD = """
from tollgate.plugins import API_VERSION, Plugin

class Stamp(Plugin):
    '''Stamps requests.'''
    name = "stamp"
    api_version = API_VERSION
    config_schema = {"type": "object", "properties": {"value": {"type": "string"}}, "required": ["value"]}

class Future(Plugin):
    name = "future"
    api_version = API_VERSION + 1

class Unversioned(Plugin):
    name = "unversioned"

class Misnamed(Plugin):
    name = "something-else"
    api_version = API_VERSION

class BadSchema(Plugin):
    name = "bad-schema"
    api_version = API_VERSION
    config_schema = {"type": "no-such-type"}

NOT_A_PLUGIN = object()
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_discovery_finds_the_shipped_plugins_and_a_third_partys(site: Path) -> None:
    install(site, "stamp_plugin", "regstamp", GOOD, {"stamp": "regstamp:Stamp"})
    registry = PluginRegistry.discover()
    assert {"ab-split", "request-size-by-customer", "stamp"} <= set(registry.plugins)
    assert registry.get("ab-split") is AbSplit
    listed = {d["name"]: d for d in registry.describe()}
    stamp = listed["stamp"]
    assert (stamp["version"], stamp["distribution"], stamp["api_version"]) == ("2.3.4", "stamp_plugin", API_VERSION)
    assert stamp["description"] == "Stamps requests." and stamp["problem"] is None
    assert stamp["config_schema"]["required"] == ["value"]
    assert listed["ab-split"]["distribution"] == "tollgate"
    assert registry.validate("stamp", {}) == [("$", "'value' is a required property")]


@pytest.mark.parametrize(
    ("name", "entry", "problem"),
    [
        (
            "future",
            "regbad:Future",
            f"is written for plugin API version {API_VERSION + 1}; this gateway implements version 1",
        ),
        ("unversioned", "regbad:Unversioned", "does not declare api_version"),
        ("broken", "regbad:Misnamed", "declares the name 'something-else'"),
        ("bad-schema", "regbad:BadSchema", "config_schema that is not a valid JSON Schema"),
        ("broken", "regbad:NOT_A_PLUGIN", "is not a tollgate.plugins.Plugin subclass"),
        ("broken", "regbad:Missing", "cannot be loaded from regbad:Missing: AttributeError"),
        ("broken", "no_such_module_here:X", "cannot be loaded from no_such_module_here:X: ModuleNotFoundError"),
    ],
)
def test_an_unusable_plugin_is_refused_with_the_reason(site: Path, name: str, entry: str, problem: str) -> None:
    install(site, "bad_plugin", "regbad", GOOD, {name: entry})
    registry = PluginRegistry.discover()
    with pytest.raises(PluginUnavailable, match=f"plugin '{name}' ") as exc:
        registry.get(name)
    assert problem in str(exc.value)
    assert problem in next(d for d in registry.describe() if d["name"] == name)["problem"]
    registry.get("ab-split")  # the others stay usable


def test_two_distributions_claiming_one_name_are_both_refused(site: Path) -> None:
    install(site, "first", "regone", GOOD, {"stamp": "regone:Stamp"})
    install(site, "second", "regtwo", GOOD, {"stamp": "regtwo:Stamp"})
    with pytest.raises(PluginUnavailable, match="provided twice"):
        PluginRegistry.discover().get("stamp")


def test_an_unknown_name_lists_what_is_installed() -> None:
    with pytest.raises(PluginUnavailable, match=r"no plugin named 'nope' is installed \(installed: ab-split\)"):
        PluginRegistry.of(AbSplit).get("nope")


def test_a_plugin_module_is_imported_on_first_use_only(site: Path) -> None:
    import sys

    install(site, "lazy_plugin", "reglazy", GOOD, {"stamp": "reglazy:Stamp"})
    registry = PluginRegistry.discover()
    assert "reglazy" not in sys.modules
    registry.get("stamp")
    assert "reglazy" in sys.modules


class Boom(Plugin):
    name = "boom"
    api_version = API_VERSION


def test_failures_are_counted_and_their_tracebacks_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    registry = PluginRegistry.of(Boom, clock=lambda: now[0])

    def fail(exc: Exception) -> None:
        try:
            raise exc
        except Exception as caught:
            registry.failed("boom", "on_request", caught, b"req-1")

    with caplog.at_level(logging.ERROR, logger="tollgate.plugins"):
        for _ in range(5):
            fail(KeyError("k"))
        fail(ZeroDivisionError())  # another type: its own report
        now[0] += LOG_INTERVAL
        fail(KeyError("k"))
    assert registry.errors == {"boom": 7}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "plugin 'boom' failed in on_request on request req-1 (answered 500)" in messages[0]
    assert messages[2].endswith("; 4 more KeyError since the last report")
    assert all(r.exc_info is not None for r in caplog.records)  # with the traceback


def _schema_of(registry: PluginRegistry, name: str) -> Any:
    return next(d for d in registry.describe() if d["name"] == name)["config_schema"]


def test_describe_lists_a_plugin_with_its_schema() -> None:
    assert _schema_of(PluginRegistry.of(AbSplit), "ab-split") is AbSplit.config_schema
