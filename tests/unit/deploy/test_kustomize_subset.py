"""tests/kustomize.py, the kustomize subset the Kubernetes tests render deploy/kubernetes with: each
feature on a small kustomization, the refusals, and the real overlays against ``kubectl kustomize``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.kustomize import Unsupported, config_map_hash, identity, render, split_image

ROOT = Path(__file__).resolve().parents[3]
KUBERNETES = ROOT / "deploy" / "kubernetes"
TREES = ("base", "overlays/dev", "overlays/production")

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "app", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"a": "1"}},
        "template": {
            "metadata": {"labels": {"a": "1"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "tollgate"}],
                "containers": [
                    {
                        "name": "main",
                        "image": "tollgate:old",
                        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "k"}}}],
                        "envFrom": [{"configMapRef": {"name": "conf"}}],
                    },
                    {"name": "side", "image": "other:1"},
                ],
                "volumes": [{"name": "v", "configMap": {"name": "conf"}}, {"name": "w", "configMap": {"name": "keep"}}],
            },
        },
    },
}


def write(directory: Path, kustomization: dict[str, object], **files: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, content in files.items():
        path = directory / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump_all(content))  # type: ignore[arg-type]
    return directory


def by_kind(resources: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(r["kind"]): r for r in resources}


def test_resources_files_and_directories_namespace_on_namespaced_kinds_only(tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
    write(tmp_path / "base", {"resources": ["app.yaml"]}, **{"app.yaml": [DEPLOYMENT, namespace]})
    out = render(write(tmp_path / "top", {"resources": ["../base"], "namespace": "prod"}))
    kinds = by_kind(out)
    assert kinds["Deployment"]["metadata"]["namespace"] == "prod"  # type: ignore[index]
    assert "namespace" not in kinds["Namespace"]["metadata"]  # type: ignore[operator]
    # the base alone is untouched by the overlay's namespace
    assert "namespace" not in by_kind(render(tmp_path / "base"))["Deployment"]["metadata"]  # type: ignore[operator]


def test_config_map_generator_hash_is_kustomizes_and_references_follow(tmp_path: Path) -> None:
    # Expected names printed by kubectl kustomize (v1.28 to v1.33, kustomize v5) for these inputs.
    (tmp_path / "f.txt").write_text("héllo\n")
    out = render(
        write(
            tmp_path,
            {
                "resources": ["app.yaml"],
                "configMapGenerator": [
                    {"name": "conf", "literals": ["a=b"]},
                    {"name": "x", "literals": ["a=<b&c>", 'q="quoted"']},
                    {"name": "z", "files": ["conf=f.txt"]},
                    {"name": "plain", "files": ["f.txt"], "options": {"disableNameSuffixHash": True}},
                ],
            },
            **{"app.yaml": [DEPLOYMENT]},
        )
    )
    maps = {r["metadata"]["name"]: r for r in out if r["kind"] == "ConfigMap"}
    assert set(maps) == {"conf-4h2mbtbbt6", "x-5g66955g58", "z-8fctmg4t46", "plain"}
    assert maps["x-5g66955g58"]["data"] == {"a": "<b&c>", "q": "quoted"}
    assert maps["z-8fctmg4t46"]["data"] == {"conf": "héllo\n"}
    assert maps["plain"]["data"] == {"f.txt": "héllo\n"}
    pod = by_kind(out)["Deployment"]["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["volumes"] == [
        {"name": "v", "configMap": {"name": "conf-4h2mbtbbt6"}},
        {"name": "w", "configMap": {"name": "keep"}},
    ]
    main = pod["containers"][0]
    assert main["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == "conf-4h2mbtbbt6"
    assert main["envFrom"] == [{"configMapRef": {"name": "conf-4h2mbtbbt6"}}]
    # the hash follows the content, not the name
    assert config_map_hash({"data": {"a": "b"}}) == "4h2mbtbbt6"
    assert config_map_hash({"data": {"a": "c"}}) != "4h2mbtbbt6"


def test_strategic_merge_patch_merges_maps_and_null_deletes(tmp_path: Path) -> None:
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "labels": {"a": None, "b": "2"}},
        "spec": {"replicas": 5, "template": {"metadata": {"annotations": {"x": "y"}}}},
    }
    out = render(
        write(
            tmp_path,
            {"resources": ["app.yaml"], "patches": [{"path": "p.yaml"}]},
            **{"app.yaml": [DEPLOYMENT], "p.yaml": [patch]},
        )
    )
    dep = out[0]
    assert dep["metadata"]["labels"] == {"b": "2"}
    assert dep["spec"]["replicas"] == 5
    assert dep["spec"]["template"]["metadata"] == {"labels": {"a": "1"}, "annotations": {"x": "y"}}
    assert len(dep["spec"]["template"]["spec"]["containers"]) == 2  # untouched siblings stay


@pytest.mark.parametrize(
    "patch",
    [
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}},  # list: merge keys
        {"spec": {"$patch": "replace"}},
    ],
)
def test_strategic_merge_patch_refuses_what_the_subset_would_render_differently(
    tmp_path: Path, patch: dict[str, object]
) -> None:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, **patch}
    write(
        tmp_path,
        {"resources": ["app.yaml"], "patches": [{"path": "p.yaml"}]},
        **{"app.yaml": [DEPLOYMENT], "p.yaml": [body]},
    )
    with pytest.raises(Unsupported):
        render(tmp_path)


def test_json6902_patch_on_its_target(tmp_path: Path) -> None:
    ops = "- {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: Y, value: z}}\n"
    ops += "- {op: replace, path: /spec/replicas, value: 7}\n- {op: remove, path: /metadata/labels}\n"
    out = render(
        write(
            tmp_path,
            {"resources": ["app.yaml"], "patches": [{"target": {"kind": "Deployment", "name": "app"}, "patch": ops}]},
            **{"app.yaml": [DEPLOYMENT]},
        )
    )
    dep = out[0]
    assert dep["spec"]["replicas"] == 7 and "labels" not in dep["metadata"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"][-1] == {"name": "Y", "value": "z"}
    assert DEPLOYMENT["spec"]["replicas"] == 2  # type: ignore[index]  # nothing shared with the input


@pytest.mark.parametrize(
    "kustomization",
    [
        {"resources": ["app.yaml"], "patches": [{"patch": "- {op: remove, path: /spec}"}]},  # 6902 without target
        {
            "resources": ["app.yaml"],
            "patches": [{"target": {"kind": "Service", "name": "app"}, "patch": "- {op: remove, path: /spec}"}],
        },
        {
            "resources": ["app.yaml"],
            "patches": [{"target": {"labelSelector": "a=1"}, "patch": "- {op: remove, path: /spec}"}],
        },
        {"resources": ["app.yaml"], "replicas": [{"name": "nothing", "count": 1}]},
        {"resources": ["app.yaml"], "commonLabels": {"a": "b"}},
        {"resources": ["app.yaml", "app.yaml"]},  # the same resource twice
        {"resources": ["app.yaml"], "configMapGenerator": [{"name": "c", "behavior": "merge", "literals": ["a=b"]}]},
    ],
)
def test_refused(tmp_path: Path, kustomization: dict[str, object]) -> None:
    write(tmp_path, kustomization, **{"app.yaml": [DEPLOYMENT]})
    with pytest.raises(Unsupported):
        render(tmp_path)


def test_images_and_replicas(tmp_path: Path) -> None:
    images = [
        {"name": "tollgate", "newName": "registry.example.com:5000/tg", "newTag": "1.2.3"},
        {"name": "other", "digest": "sha256:abc"},
    ]
    out = render(
        write(
            tmp_path,
            {"resources": ["app.yaml"], "images": images, "replicas": [{"name": "app", "count": 3}]},
            **{"app.yaml": [DEPLOYMENT]},
        )
    )
    pod = out[0]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["image"] == "registry.example.com:5000/tg:1.2.3"
    assert pod["containers"][0]["image"] == "registry.example.com:5000/tg:1.2.3"
    assert pod["containers"][1]["image"] == "other@sha256:abc"
    assert out[0]["spec"]["replicas"] == 3


def test_split_image() -> None:
    assert split_image("tollgate") == ("tollgate", "", "")
    assert split_image("reg:5000/a/tollgate:1.0@sha256:ff") == ("reg:5000/a/tollgate", "1.0", "sha256:ff")
    assert split_image("reg:5000/tollgate") == ("reg:5000/tollgate", "", "")


def _kubectl_kustomize() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    return kubectl if re.search(r"Kustomize Version: v5\.", version) else None


@pytest.mark.parametrize("tree", TREES)
def test_the_overlays_render_as_kubectl_kustomize_renders_them(tree: str) -> None:
    # Not a service: kubectl cannot be installed from this project's registries (the module docstring
    # of tests/kustomize.py), so this runs where it is installed and says so where it is not.
    kubectl = _kubectl_kustomize()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize v5 on this machine")
    printed = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / tree)], capture_output=True, text=True, check=True, timeout=60
    )
    theirs = {identity(r): r for r in yaml.safe_load_all(printed.stdout) if r}
    ours = {identity(r): r for r in render(KUBERNETES / tree)}
    assert set(ours) == set(theirs)
    for key, resource in ours.items():
        assert resource == theirs[key], key
