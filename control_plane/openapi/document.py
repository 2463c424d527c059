"""Reading an OpenAPI document: bytes (JSON or YAML) → a validated 3.0 / 3.1 document as a dict.

Every problem is reported as ``InvalidDocument`` with RFC 6901 JSON pointers into the document.
Two rules come before the spec validator, for safety rather than correctness:

* only local ``$ref`` (``#/...``) are accepted: the validator would otherwise fetch remote or file
  references from the control plane's host (SSRF / local file disclosure);
* YAML aliases are refused: ``a: &x [...]`` / ``*x`` expand into arbitrarily large JSON (a "billion
  laughs" document), and OpenAPI has ``$ref`` for reuse anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from control_plane.errors import InvalidDocument

MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_PROBLEMS = 20
SUPPORTED_VERSIONS = ("3.0.", "3.1.")

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

# The validator's semantic checks (undeclared path parameters, duplicate operationIds) carry no
# path; their messages name the operation, which is enough to point at it.
_OPERATION_IN_MESSAGE = re.compile(r"for '(\w+)' operation in '([^']+)'")


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: object) -> str:
    return "".join("/" + escape(str(t)) for t in tokens)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None) -> Any:
    """JSON for ``application/json`` (and ``+json``), YAML for the YAML types; otherwise sniffed."""
    kind = media_type(content_type)
    text = _decode(body)
    if kind in JSON_TYPES or kind.endswith("+json"):
        return _load_json(text)
    if kind in YAML_TYPES:
        return _load_yaml(text)
    return _load_json(text) if text.lstrip().startswith("{") else _load_yaml(text)


def parse_text(text: str) -> Any:
    """A document given as a string (inside the JSON envelope): JSON if it looks like it, else YAML."""
    return _load_json(text) if text.lstrip().startswith("{") else _load_yaml(text)


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidDocument([("", f"the document is not UTF-8 (byte {exc.start})")]) from None


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDocument([("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
    except RecursionError:
        raise InvalidDocument([("", "the document is nested too deeply")]) from None


def _load_yaml(text: str) -> Any:
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "somewhere"
                raise InvalidDocument([("", f"YAML aliases are not accepted (at {where}); use $ref")])
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidDocument([("", f"not valid YAML: {str(exc).splitlines()[0]}")]) from None
    except RecursionError:
        raise InvalidDocument([("", "the document is nested too deeply")]) from None


def validate(doc: Any) -> dict[str, Any]:
    """Structural checks, local-refs-only, then openapi-spec-validator (3.0 or 3.1 by ``openapi``)."""
    if not isinstance(doc, dict):
        raise InvalidDocument([("", "an OpenAPI document must be an object")])
    version = doc.get("openapi")
    if not isinstance(version, str) or not version.startswith(SUPPORTED_VERSIONS):
        found = f"{version!r}" if version is not None else "nothing"
        raise InvalidDocument([("/openapi", f"expected an OpenAPI 3.0.x or 3.1.x version string, found {found}")])
    remote = [(p, f"only local references (#/...) are accepted, found {ref!r}") for p, ref in _refs(doc, "")]
    if remote:
        raise InvalidDocument(remote[:MAX_PROBLEMS])
    problems = _spec_problems(doc, version)
    if problems:
        raise InvalidDocument(problems)
    return doc


def _refs(node: Any, at: str) -> Iterator[tuple[str, str]]:
    """Every non-local ``$ref`` (pointer of the ``$ref`` member, value).  Iterative: no recursion limit."""
    stack: list[tuple[Any, str]] = [(node, at)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if key == "$ref" and isinstance(child, str) and not child.startswith("#"):
                    yield where + "/$ref", child
                else:
                    stack.append((child, where + "/" + escape(str(key))))
        elif isinstance(value, list):
            stack.extend((child, f"{where}/{i}") for i, child in enumerate(value))


def _spec_problems(doc: dict[str, Any], version: str) -> list[tuple[str, str]]:
    from jsonschema_path import SchemaPath
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    cls = OpenAPIV31SpecValidator if version.startswith("3.1.") else OpenAPIV30SpecValidator
    problems: list[tuple[str, str]] = []
    try:
        for error in cls(SchemaPath.from_dict(doc)).iter_errors():
            problems.append((_error_pointer(error), error.message))
            if len(problems) >= MAX_PROBLEMS:
                break
    except RecursionError:
        return [("", "the document is nested too deeply (or has circular references the validator cannot follow)")]
    return problems


def _error_pointer(error: Any) -> str:
    path = list(getattr(error, "absolute_path", ()) or ())
    if path:
        return pointer(*path)
    m = _OPERATION_IN_MESSAGE.search(str(getattr(error, "message", "")))
    return pointer("paths", m.group(2), m.group(1)) if m else ""
