"""deploy/kubernetes for the tests: the rendered overlays (tests/kustomize.py), what they say about
pods, Services and NetworkPolicies, and their containers run as local processes.

:class:`LocalPods` runs a pod template's containers the way ``tests/integration/test_compose.py``
runs compose services: the command line and environment come from the manifest; what only a cluster
has is substituted — a Service name (``http://tollgate-control-plane:8001``, short or
``.svc.cluster.local``) becomes ``127.0.0.1`` and the local port of a pod behind it, every container
port a free local port, ``0.0.0.0`` loopback, a volume mount a directory of its own per pod and
volume (a ConfigMap volume holds the ConfigMap's files), ``secretKeyRef`` the test's Secret values
and ``fieldRef: metadata.name`` the pod's name.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.harness import ROOT, Cluster, Proc, free_port
from tests.kustomize import Resource, render, split_image

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
_URL = re.compile(r"\b(https?|redis|rediss|postgresql)://([^/@\s'\"]+@)?([A-Za-z0-9_.-]+):(\d+)")


def rendered(overlay: str) -> list[Resource]:
    return render(KUBERNETES / "overlays" / overlay)


def of_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@dataclass
class Workload:
    """A Deployment, StatefulSet or Job: its pod template and how many pods it has."""

    resource: Resource

    @property
    def kind(self) -> str:
        return str(self.resource["kind"])

    @property
    def name(self) -> str:
        return str(self.resource["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.resource["metadata"].get("namespace", "default"))

    @property
    def pod(self) -> dict[str, Any]:
        return self.resource["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    @property
    def labels(self) -> dict[str, str]:
        return self.resource["spec"]["template"]["metadata"].get("labels") or {}  # type: ignore[no-any-return]

    @property
    def annotations(self) -> dict[str, str]:
        return self.resource["spec"]["template"]["metadata"].get("annotations") or {}  # type: ignore[no-any-return]

    def containers(self, init: bool = True) -> list[dict[str, Any]]:
        return (self.pod.get("initContainers", []) if init else []) + self.pod["containers"]

    def pod_names(self, limit: int = 1) -> list[str]:
        """Names as the cluster gives them (a StatefulSet's are stable: NAME-0, NAME-1...); ``limit``
        pods at most: one of each runs locally (replicas are alike; a second costs seconds)."""
        if self.kind == "Job":
            return [self.name]
        count = min(int(self.resource["spec"].get("replicas", 1)), limit)
        return [f"{self.name}-{i}" for i in range(count)]

    def port(self, ref: int | str) -> int:
        """A container port by number or by name (probes, Services and NetworkPolicies use names)."""
        for container in self.pod["containers"]:
            for port in container.get("ports", []):
                if ref in (port["containerPort"], port.get("name")):
                    return int(port["containerPort"])
        raise KeyError(f"{self.name} has no container port {ref!r}")


def workloads(resources: list[Resource]) -> list[Workload]:
    return [Workload(r) for r in resources if r["kind"] in WORKLOAD_KINDS]


def workload(resources: list[Resource], name: str) -> Workload:
    (found,) = [w for w in workloads(resources) if w.name == name]
    return found


def is_tollgate(container: dict[str, Any]) -> bool:
    """Runs the image the project's Dockerfile builds (overlays rename it: REGISTRY/tollgate:TAG)."""
    return split_image(container["image"])[0].rsplit("/", 1)[-1] == "tollgate"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector: matchLabels and matchExpressions ({} selects everything)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """A pod that opens a connection: where it runs and its labels."""

    namespace: str
    pod_labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}  # set by the API server


def ingress_allowed(resources: list[Resource], target: Workload, port: int, peer: Peer) -> bool:
    """NetworkPolicy semantics for one TCP connection from ``peer`` to ``target``'s ``port``: allowed
    when no policy selects the pod for ingress, else when a rule of one that does admits both the
    peer and the port (rules and policies add up; a rule without ``from`` admits every source, one
    without ``ports`` every port; a peer with only a podSelector is in the policy's namespace)."""
    policies = [
        p
        for p in of_kind(resources, "NetworkPolicy").values()
        if p["metadata"].get("namespace", "default") == target.namespace
        and selects(p["spec"]["podSelector"], target.labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(target.port(p["port"]) == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                continue
            sources = rule.get("from")
            if not sources or any(_peer_matches(s, target.namespace, peer) for s in sources):
                return True
    return False


def _peer_matches(source: dict[str, Any], namespace: str, peer: Peer) -> bool:
    if "ipBlock" in source:
        return False  # addresses, not pods: nothing here is reasoned about by address
    ns_selector = source.get("namespaceSelector")
    in_namespace = peer.namespace == namespace if ns_selector is None else selects(ns_selector, peer.ns_labels())
    pod_selector = source.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, peer.pod_labels))


@dataclass
class LocalPod:
    name: str
    workload: Workload
    ports: dict[int, int]  # container port -> local port
    dirs: dict[str, Path]  # volume name -> local directory


class LocalPods:
    """The overlay's pods as local processes (module docstring)."""

    def __init__(
        self,
        resources: list[Resource],
        secret: dict[str, str],
        tmp: Path,
        cluster: Cluster,
        *,
        external: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self.resources = resources
        self.secret = secret
        self.tmp = tmp
        self.cluster = cluster
        self.external = external or {}  # (host, port) outside the cluster (a target) -> local port
        self.services = of_kind(resources, "Service")
        self.config_maps = of_kind(resources, "ConfigMap")
        self.pods: dict[str, LocalPod] = {}
        for w in workloads(resources):
            if not all(is_tollgate(c) for c in w.containers()):
                continue  # postgres / redis images: the machine's own servers stand in (the Secret's URLs)
            for name in w.pod_names():
                ports = {p["containerPort"]: free_port() for c in w.pod["containers"] for p in c.get("ports", [])}
                self.pods[name] = LocalPod(name, w, ports, {})

    def pods_of(self, workload_name: str) -> list[LocalPod]:
        return [p for p in self.pods.values() if p.workload.name == workload_name]

    def service_port(self, host: str, port: int) -> int | None:
        """The local port behind ``host:port`` when host names a Service (first ready pod, as kube-proxy)."""
        name, _, rest = host.partition(".")
        service = self.services.get(name)
        # NAME, NAME.NAMESPACE, NAME.NAMESPACE.svc, NAME.NAMESPACE.svc.cluster.local
        if service is None or (rest and rest.split(".")[0] != service["metadata"].get("namespace")):
            return self.external.get((host, port))
        for entry in service["spec"]["ports"]:
            if entry["port"] != port:
                continue
            for pod in self.pods.values():
                if selects({"matchLabels": service["spec"]["selector"]}, pod.workload.labels):
                    return pod.ports[pod.workload.port(entry.get("targetPort", port))]
        return None

    def url(self, value: str) -> str:
        def sub(m: re.Match[str]) -> str:
            local = self.service_port(m.group(3), int(m.group(4)))
            return m.group(0) if local is None else f"{m.group(1)}://{m.group(2) or ''}127.0.0.1:{local}"

        return _URL.sub(sub, value)

    def local(self, pod: LocalPod, container: dict[str, Any], value: str) -> str:
        """One argument or environment value, made local."""
        if value == "0.0.0.0":
            return "127.0.0.1"  # tests send traffic to loopback only
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"])):
            base = mount["mountPath"].rstrip("/")
            if value == base or value.startswith(base + "/"):
                return str(self.volume(pod, mount["name"])) + value[len(base) :]
        return self.url(value)

    def volume(self, pod: LocalPod, name: str) -> Path:
        if name in pod.dirs:
            return pod.dirs[name]
        path = self.tmp / pod.name / name
        path.mkdir(parents=True, exist_ok=True)
        volumes = {v["name"]: v for v in pod.workload.pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in pod.workload.resource["spec"].get("volumeClaimTemplates", [])}
        source = volumes.get(name)
        if source is not None and "configMap" in source:
            for key, text in self.config_maps[source["configMap"]["name"]]["data"].items():
                (path / key).write_text(self.config_file(key, text))
        else:
            assert name in claims or (source is not None and "emptyDir" in source), f"{pod.name}: volume {name}?"
        pod.dirs[name] = path
        return path

    def config_file(self, key: str, text: str) -> str:
        """A ConfigMap file as the pod reads it: a gateway.yaml's targets (a Service, or a host outside
        the cluster that the test stands in for) point at the local ports."""
        if key != "gateway.yaml":
            return text
        doc = yaml.safe_load(text)
        for upstream in doc.get("upstreams", []):
            for target in upstream.get("targets", []):
                local = self.service_port(target["host"], int(target["port"]))
                assert local is not None, f"gateway.yaml target {target['host']}:{target['port']} has no stand-in"
                target["host"], target["port"] = "127.0.0.1", local
        return yaml.safe_dump(doc)

    def env(self, pod: LocalPod, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom")
            if source is None:
                env[item["name"]] = self.local(pod, container, str(item["value"]))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["name"] == "tollgate", f"{pod.name}: Secret {ref['name']}"
                env[item["name"]] = self.secret[ref["key"]]  # a KeyError is a key the docs do not create
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = pod.name
            else:
                raise AssertionError(f"{pod.name}: no local stand-in for {item}")
        return env

    def argv(self, pod: LocalPod, container: dict[str, Any]) -> list[str]:
        command = [*container["command"], *container.get("args", [])]
        out: list[str] = []
        for i, arg in enumerate(command):
            previous = command[i - 1] if i else ""
            if previous in ("--port", "--status-port"):
                out.append(str(pod.ports[int(arg)]))
            else:
                out.append(self.local(pod, container, arg))
        program = {"tollgate": [sys.executable, "-m", "tollgate"], "python": [sys.executable]}[out[0]]
        return [*program, *out[1:]]

    def start(self, pod: LocalPod, container: dict[str, Any]) -> Proc:
        return self.cluster.spawn(
            f"{pod.name}.{container['name']}", self.argv(pod, container), self.env(pod, container)
        )

    def run(self, pod: LocalPod, container: dict[str, Any], timeout: float = 60.0) -> Proc:
        """A container that runs to completion (a Job's, an init container): it must exit 0."""
        proc = self.start(pod, container)
        assert proc.proc is not None
        rc = proc.proc.wait(timeout=timeout)
        assert rc == 0, f"{proc.name} exited {rc}:\n{proc.log()}"
        return proc

    def http(self, pod: LocalPod, port: int | str, path: str) -> str:
        return f"http://127.0.0.1:{pod.ports[pod.workload.port(port)]}{path}"
