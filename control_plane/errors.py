"""Control-plane domain errors.

    ControlPlaneError
     ├── NotFound   a resource named by id does not exist
     ├── Conflict   the write would duplicate or orphan something
     ├── Invalid    a value is acceptable to the schema but not to the business rules (names a field,
     │    │         or a full location such as ``("config", "apis", 1, "routes", 0, "upstream")``)
     │    └── InvalidDocument  an imported OpenAPI document is unusable (names JSON pointers into it)
     ├── Unavailable  an optional capability (the SDK generator) is missing or failed to run
     └── SecretUnreadable  a secret stored encrypted does not open with this replica's secret key

Services raise these; only ``control_plane.api`` maps them to HTTP status codes.
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ControlPlaneError):
    @classmethod
    def of(cls, kind: str, id: str) -> NotFound:
        return cls(f"{kind} {id!r} not found")


class Conflict(ControlPlaneError):
    pass


class Invalid(ControlPlaneError):
    def __init__(self, field: str, message: str, *, loc: tuple[str | int, ...] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.loc: tuple[str | int, ...] = loc if loc is not None else (field,)


class InvalidDocument(Invalid):
    """``problems``: (JSON pointer into the document, message) pairs, the first one most relevant."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("InvalidDocument needs at least one problem")
        pointer, message = problems[0]
        super().__init__("document", f"{pointer or '(root)'}: {message}")
        self.problems = problems


class Unavailable(ControlPlaneError):
    pass


class SecretUnreadable(ControlPlaneError):
    """Raised by :mod:`control_plane.secretbox`; the message names the row, never the value."""
