"""The subset of kustomize that deploy/kubernetes uses, in Python, so the tests can render its overlays.

Neither kustomize nor kubectl comes from the package registries this project installs from (Debian
ships a kubectl of 2021 whose kustomize predates ``patches`` and ``replicas``), so CI could not run
them.  This renders what ``kubectl kustomize DIR`` renders for the features below, and refuses the
rest (:class:`Unsupported`) instead of rendering it differently:

* ``resources``: files (multi-document YAML) and directories with a ``kustomization.yaml``, in order;
* ``configMapGenerator``: ``files`` (``PATH`` or ``KEY=PATH``) and ``literals``; the name gets
  kustomize's content hash (:func:`config_map_hash`) unless ``options.disableNameSuffixHash``, and
  every reference to the generated name in a pod template follows (volumes, env, envFrom);
* ``patches`` (``path`` or inline ``patch``): a JSON 6902 list, applied with ``jsonpatch``, to the
  ``target`` ({kind, name}); or a strategic-merge patch of *maps only* (merged key by key, ``null``
  deletes) to its own kind and name — a list in one has merge keys this subset does not know;
* ``namespace``: set on every namespaced resource;
* ``images``: ``name`` -> ``newName`` / ``newTag`` / ``digest`` in every container and init container;
* ``replicas``: ``name`` -> ``count``.

The order is kustomize's: resources, generators, patches, namespace, replicas, images, name hashes.
tests/unit/deploy/test_kustomize_subset.py tests each feature, and compares this with
``kubectl kustomize`` for every overlay where a kubectl with kustomize v5 is installed.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "namespace", "configMapGenerator", "patches", "images", "replicas"}
)
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    }
)
# kustomize rewrites namespaces inside these (subjects): not done here
REFUSED_KINDS = frozenset({"RoleBinding", "ClusterRoleBinding"})
SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
_HASH_LETTERS = str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"})


class Unsupported(ValueError):
    """The kustomization uses something this subset does not render (as kustomize would)."""


def render(directory: Path) -> list[Resource]:
    """What ``kubectl kustomize directory`` prints, as a list of resources (in no particular order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise Unsupported(f"{directory}: kustomization fields not in the subset: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources") or []:
        path = directory / entry
        resources.extend(render(path) if path.is_dir() else load(path))
    generated = [_generate(directory, spec) for spec in kustomization.get("configMapGenerator") or []]
    resources.extend(cm for cm, _ in generated)
    for spec in kustomization.get("patches") or []:
        _patch(directory, spec, resources)
    namespace = kustomization.get("namespace")
    for res in resources:
        if res["kind"] in REFUSED_KINDS:
            raise Unsupported(f"{res['kind']} (kustomize rewrites its subjects' namespaces)")
        if namespace and res["kind"] not in CLUSTER_SCOPED:
            res["metadata"]["namespace"] = namespace
    for spec in kustomization.get("replicas") or []:
        _replicas(spec, resources)
    for spec in kustomization.get("images") or []:
        _images(spec, resources)
    renames = {}
    for cm, hashed in generated:
        if hashed:
            old = cm["metadata"]["name"]
            cm["metadata"]["name"] = renames[old] = f"{old}-{config_map_hash(cm)}"
    for res in resources:
        for pod in _pod_specs(res):
            _rename_config_maps(pod, renames)
    _check_unique(resources)
    return resources


def load(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def config_map_hash(cm: Resource) -> str:
    """kustomize's name suffix: the SHA-256 of ``{"data", "kind", "name"}`` as Go's ``json.Marshal``
    writes it, its first 10 hex digits with 0 1 3 a e spelt g h k m t (kubectl's ``hash.go``: no
    vowels, no digits that read as letters).  ``name`` is always "" in kustomize v5: its hasher looks
    up ``metadata/name`` as one key, finds nothing (api/hasher/hasher.go); checked against kubectl."""
    doc: dict[str, Any] = {"data": cm.get("data") or {}, "kind": "ConfigMap", "name": ""}
    if cm.get("binaryData"):
        doc["binaryData"] = cm["binaryData"]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # json.Marshal escapes these for HTML safety; Python does not
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return hashlib.sha256(text.encode()).hexdigest()[:10].translate(_HASH_LETTERS)


def _generate(directory: Path, spec: dict[str, Any]) -> tuple[Resource, bool]:
    unknown = set(spec) - {"name", "files", "literals", "options", "behavior"}
    options = spec.get("options") or {}
    if unknown or set(options) - {"disableNameSuffixHash"} or spec.get("behavior", "create") != "create":
        raise Unsupported(f"configMapGenerator {spec.get('name')}: only name, files, literals, disableNameSuffixHash")
    data: dict[str, str] = {}
    for item in spec.get("files") or []:
        key, _, source = item.rpartition("=")
        path = directory / source
        data[key or path.name] = path.read_text()
    for item in spec.get("literals") or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise Unsupported(f"literal {item!r} is not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        data[key] = value
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]}, "data": data}
    return cm, not options.get("disableNameSuffixHash", False)


def _patch(directory: Path, spec: dict[str, Any], resources: list[Resource]) -> None:
    if set(spec) - {"path", "patch", "target"}:
        raise Unsupported(f"patch fields {sorted(set(spec) - {'path', 'patch', 'target'})}")
    text = (directory / spec["path"]).read_text() if "path" in spec else spec["patch"]
    body = yaml.safe_load(text)
    target = spec.get("target")
    if target is not None and set(target) - {"kind", "name"}:
        raise Unsupported(f"patch target fields {sorted(set(target) - {'kind', 'name'})}: only kind and name")
    if isinstance(body, list):
        if target is None:
            raise Unsupported("a JSON 6902 patch needs a target")
        selected = _select(resources, target.get("kind"), target.get("name"))
        operations = jsonpatch.JsonPatch(body)
        for res in selected:
            patched = operations.apply(copy.deepcopy(res))
            res.clear()
            res.update(patched)
        return
    if target is not None:
        selected = _select(resources, target.get("kind"), target.get("name"))
    else:
        selected = _select(resources, body.get("kind"), body.get("metadata", {}).get("name"), body.get("apiVersion"))
    for res in selected:
        _merge(res, body, path=res["kind"])


def _select(resources: list[Resource], kind: str | None, name: str | None, api: str | None = None) -> list[Resource]:
    selected = [
        r
        for r in resources
        if (kind is None or r["kind"] == kind)
        and (name is None or r["metadata"]["name"] == name)
        and (api is None or r["apiVersion"] == api)
    ]
    if not selected:
        raise Unsupported(f"patch target {kind}/{name} matches no resource")  # kustomize fails too
    return selected


def _merge(into: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    """A strategic-merge patch without lists: maps merged key by key, ``null`` deletes the key."""
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise Unsupported(f"{path}.{key}: patch directives are not in the subset")
        if value is None:
            into.pop(key, None)
        elif isinstance(value, list):
            raise Unsupported(f"{path}.{key}: a list in a strategic-merge patch (use a JSON 6902 patch)")
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, f"{path}.{key}")
        else:
            into[key] = copy.deepcopy(value)


def _replicas(spec: dict[str, Any], resources: list[Resource]) -> None:
    matched = [r for r in resources if r["kind"] in SCALABLE and r["metadata"]["name"] == spec["name"]]
    if not matched:
        raise Unsupported(f"replicas: no Deployment/StatefulSet named {spec['name']}")
    for res in matched:
        res["spec"]["replicas"] = int(spec["count"])


def split_image(image: str) -> tuple[str, str, str]:
    """``registry:5000/name:tag@sha256:...`` -> (name, tag, digest); a ':' before the last '/' is a port."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _images(spec: dict[str, Any], resources: list[Resource]) -> None:
    if set(spec) - {"name", "newName", "newTag", "digest"}:
        raise Unsupported(f"images fields {sorted(set(spec) - {'name', 'newName', 'newTag', 'digest'})}")
    for res in resources:
        for pod in _pod_specs(res):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, tag, digest = split_image(container["image"])
                if name != spec["name"]:
                    continue
                name = spec.get("newName", name)
                if "digest" in spec:
                    tag, digest = "", spec["digest"]
                elif "newTag" in spec:
                    tag, digest = str(spec["newTag"]), ""
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _pod_specs(res: Resource) -> list[dict[str, Any]]:
    if res["kind"] == "Pod":
        return [res["spec"]]
    if res["kind"] in WORKLOADS:
        return [res["spec"]["template"]["spec"]]
    if res["kind"] == "CronJob":
        return [res["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def _rename_config_maps(pod: dict[str, Any], renames: dict[str, str]) -> None:
    def renamed(ref: dict[str, Any] | None) -> None:
        if ref is not None and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]

    for volume in pod.get("volumes", []):
        renamed(volume.get("configMap"))
        for source in (volume.get("projected") or {}).get("sources", []):
            renamed(source.get("configMap"))
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for env in container.get("env", []):
            renamed((env.get("valueFrom") or {}).get("configMapKeyRef"))
        for source in container.get("envFrom", []):
            renamed(source.get("configMapRef"))


def identity(res: Resource) -> tuple[str, str, str, str]:
    meta = res["metadata"]
    return res["apiVersion"], res["kind"], meta.get("namespace", ""), meta["name"]


def _check_unique(resources: list[Resource]) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for res in resources:
        key = identity(res)
        if key in seen:
            raise Unsupported(
                f"two resources are {key}"
            )  # kustomize: "may not add resource with an already registered id"
        seen.add(key)
