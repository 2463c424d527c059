"""``GET /v1/plugins``: the Python plugins a ``plugins`` policy may name (docs/plugins.md).

What is listed is what this control plane process found in the entry point group
``tollgate.plugins`` when it started; workers discover their own, so install a plugin on both (a
snapshot naming one a worker lacks is refused by that worker, which keeps its config).
"""

from __future__ import annotations

from fastapi import APIRouter

from control_plane.schemas.plugins import PluginList, PluginPublic
from control_plane.schemas.policies import plugin_registry
from tollgate.plugins import API_VERSION

router = APIRouter(prefix="/plugins", tags=["plugins"])


@router.get("")
def list_plugins() -> PluginList:
    """The Python plugins installed on the control plane, with their config schemas and problems."""
    return PluginList(items=[PluginPublic(**d) for d in plugin_registry().describe()], api_version=API_VERSION)
