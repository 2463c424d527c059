"""The plugins policy in the admin API's models: names checked against the installed plugins, configs
against their JSON Schemas and the plugins themselves; what is stored always has both members."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from control_plane.schemas import policies as schemas
from control_plane.schemas.policies import Policies
from data_plane.policies.plugin_registry import PluginRegistry
from tollgate.plugins import API_VERSION, Plugin

SPLIT = {"variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}


def _error(doc: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    with pytest.raises(ValidationError) as exc:
        Policies.model_validate(doc)
    (err,) = exc.value.errors()
    return err["loc"], err["msg"]


def test_the_shipped_plugins_validate_and_dump_name_and_config() -> None:
    doc = {"plugins": [{"name": "ab-split", "config": SPLIT}, {"name": "request-size-by-customer"}]}
    p = Policies.model_validate(doc)
    expected = {"plugins": [{"name": "ab-split", "config": SPLIT}, {"name": "request-size-by-customer", "config": {}}]}
    assert p.model_dump() == expected
    assert p.model_dump(exclude_unset=True) == expected  # (how a PATCH dumps: config still there)


def test_an_unknown_plugin_is_refused_on_its_name() -> None:
    loc, msg = _error({"plugins": [{"name": "nope"}]})
    assert loc == ("plugins", 0, "name")
    assert "no plugin named 'nope' is installed" in msg and "ab-split" in msg


def test_a_config_that_fails_the_schema_is_refused_with_the_path_and_message() -> None:
    loc, msg = _error({"plugins": [{"name": "request-size-by-customer", "config": {"customers": {"c1": -5}}}]})
    assert loc == ("plugins", 0, "config")
    assert "$.customers.c1: -5 is less than the minimum of 0" in msg


def test_a_config_the_plugin_itself_refuses_is_refused() -> None:
    loc, msg = _error({"plugins": [{"name": "ab-split", "config": {"variants": [{"name": "a", "weight": 0}]}}]})
    assert loc == ("plugins", 0, "config")
    assert "plugin 'ab-split' refused its config: ValueError: variants: at least one weight" in msg


def test_a_plugin_of_another_api_version_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    class Old(Plugin):
        name = "old"
        api_version = API_VERSION + 1

    monkeypatch.setattr(schemas, "plugin_registry", lambda: PluginRegistry.of(Old))
    loc, msg = _error({"plugins": [{"name": "old"}]})
    assert loc == ("plugins", 0, "name") and f"written for plugin API version {API_VERSION + 1}" in msg
