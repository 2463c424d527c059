"""The Python plugins installed on the control plane (``GET /v1/plugins``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PluginPublic(BaseModel):
    name: str = Field(description="what a plugins policy names it by (its entry point in the group tollgate.plugins)")
    version: str | None = Field(default=None, description="version of the distribution that provides it")
    distribution: str | None = Field(default=None, description="the distribution (package) that provides it")
    source: str = Field(description="module:attribute of the plugin class")
    api_version: int | None = Field(default=None, description="plugin interface version it is written for")
    description: str = Field(default="", description="what the plugin does (its docstring)")
    config_schema: dict[str, Any] | None = Field(default=None, description="JSON Schema of its config")
    problem: str | None = Field(
        default=None, description="why it cannot be used (import error, other API version...); null: usable"
    )


class PluginList(BaseModel):
    items: list[PluginPublic] = Field(description="the installed plugins")
    api_version: int = Field(description="the plugin interface version this gateway implements")
