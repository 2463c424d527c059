"""data_plane/errors.py: one exception family, defined in one module."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import data_plane
from data_plane import errors


def _data_plane_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(data_plane.__path__, "data_plane.")]


def test_every_data_plane_exception_is_in_the_family_and_defined_in_errors() -> None:
    found = []
    for name in _data_plane_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("data_plane"):
                found.append(cls)
                assert cls.__module__ == "data_plane.errors", f"{cls.__qualname__} defined in {cls.__module__}"
                assert issubclass(cls, errors.DataPlaneError), cls
    assert errors.RequestRefused in found  # the walk saw the request path's modules


def test_the_docstring_draws_every_class_of_the_family() -> None:
    doc = errors.__doc__ or ""
    family = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.DataPlaneError)]
    assert len(family) >= 10
    for cls in family:
        assert cls.__name__ in doc, cls.__name__


def test_standard_bases_that_callers_rely_on_are_kept() -> None:
    assert issubclass(errors.SnapshotError, ValueError)  # worker start-up and sync catch ValueError
    assert issubclass(errors.PlanError, errors.SnapshotError)
    assert issubclass(errors.RespConnectionError, ConnectionError)
    assert issubclass(errors.SpoolInUse, RuntimeError)
