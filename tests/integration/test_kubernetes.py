"""deploy/kubernetes, tested without a cluster: each overlay is rendered (tests/kustomize.py, the same
output as ``kubectl kustomize``), every manifest is validated against the Kubernetes schemas that
``kubernetes-validate`` ships (offline, strict: an unknown field is an error), the rules of the
deployment are checked on the rendered objects (secrets only by reference, probes, graceful
termination covering the worker's drain, NetworkPolicies, hardening, volumes), and every container
of ours runs as a local process from its manifest's command line and environment
(tests/integration/kubernetes_support.py), in the cluster's order: the control plane's init step
waits, the migration Job runs, the control plane starts, a worker, the GitOps apply Job, then a
request through the traffic Service reaches the backend; the worker pod is then restarted with the
control plane gone and still serves, from the volume its StatefulSet gives it back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from control_plane.server import GRACEFUL_SHUTDOWN_SECONDS
from control_plane.settings import Settings
from data_plane.http.shutdown import LISTEN_SETTLE
from data_plane.server import USAGE_DELIVERY_AT_SHUTDOWN
from data_plane.settings import WorkerSettings
from tests.helpers import port_open, require_service
from tests.integration.harness import ROOT, Cluster, wait_until
from tests.integration.kubernetes_support import (
    OVERLAYS,
    LocalPods,
    Peer,
    Workload,
    ingress_allowed,
    is_tollgate,
    of_kind,
    rendered,
    selects,
    workload,
    workloads,
)
from tests.kustomize import Resource

# The Kubernetes versions the manifests are validated against: a recent one still in wide support,
# and the newest kubernetes-validate ships (it reads the schemas from the package: no network).
KUBERNETES_VERSIONS = ("1.33", "1.37")
DOCS = ROOT / "docs" / "kubernetes.md"
DOCKERFILE = ROOT / "Dockerfile"
CONTROL_PLANE = "tollgate-control-plane"
WORKER = "tollgate-worker"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# env names whose values are secrets: only ever from a Secret
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|REDIS_URL")


@pytest.fixture(params=OVERLAYS, scope="module")
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def manifests(overlay: str) -> list[Resource]:
    return rendered(overlay)


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def main_container(w: Workload) -> dict[str, Any]:
    (container,) = w.pod["containers"]
    return container


# --- the manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(manifests: list[Resource], version: str) -> None:
    kinds = set()
    for resource in manifests:
        # strict: additionalProperties false, so a misspelt field (readinesProbe) is an error, not ignored
        kubernetes_validate.validate(resource, version, strict=True)
        kinds.add(resource["kind"])
    required = {"Deployment", "StatefulSet", "Job", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert kinds >= required | {"NetworkPolicy", "ConfigMap"}


def test_the_validator_refuses_a_misspelt_field(manifests: list[Resource]) -> None:
    # the check above can fail: an unknown field and a wrong type are both refused
    worker = workload(manifests, WORKER).resource
    bad = yaml.safe_load(yaml.safe_dump(worker))
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


def test_secrets_are_referenced_never_inlined(manifests: list[Resource]) -> None:
    assert not of_kind(manifests, "Secret"), "the Secret is created by the operator (docs/kubernetes.md), not shipped"
    referenced = set()
    for w in workloads(manifests):
        for container in w.containers():
            for name, item in container_env(container).items():
                if SECRET_ENV.search(name):
                    assert "value" not in item, f"{w.name}/{container['name']}: {name} has an inline value"
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "tollgate" and not ref.get("optional", False)
                    referenced.add(ref["key"])
            assert "envFrom" not in container  # every variable named, none pulled in wholesale
    # no credential inside any value (URLs with a password, bearer tokens), ConfigMaps included
    for resource in manifests:
        text_ = yaml.safe_dump(resource)
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text_), f"{resource['metadata']['name']}: a URL with a password"
        assert "Bearer " not in text_
    assert {"cluster-token", "admin-token", "secret-key", "database-url", "redis-url"} <= referenced


def _documented_secret_keys(overlay: str) -> set[str]:
    """The keys of the ``kubectl create secret generic tollgate`` command docs/kubernetes.md gives for
    the overlay (its namespace names it)."""
    namespace = next(iter(of_kind(rendered(overlay), "Deployment").values()))["metadata"]["namespace"]
    commands = re.findall(r"kubectl -n (\S+) create secret generic tollgate((?:[^\n]*\\\n)*[^\n]*)", DOCS.read_text())
    found = [body for ns, body in commands if ns == namespace]
    assert len(found) == 1, f"docs/kubernetes.md: one `kubectl -n {namespace} create secret generic tollgate` command"
    return set(re.findall(r"--from-literal=([a-z-]+)=", found[0]))


def test_the_documented_secret_has_every_key_the_manifests_use(manifests: list[Resource], overlay: str) -> None:
    used = set()
    for w in workloads(manifests):
        for container in w.containers():
            for item in container.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    used.add(ref["key"])
    assert _documented_secret_keys(overlay) == used


def test_environment_variables_are_ones_tollgate_reads(manifests: list[Resource]) -> None:
    source = "\n".join(
        p.read_text() for d in ("control_plane", "data_plane", "tollgate") for p in (ROOT / d).rglob("*.py")
    )
    for w in workloads(manifests):
        for container in w.containers():
            if not is_tollgate(container):
                continue
            for name in container_env(container):
                assert f'"{name}"' in source, f"{w.name}: {name} is read by nothing (a typo?)"


def test_control_plane_waits_for_the_migration_job_and_never_migrates_itself(manifests: list[Resource]) -> None:
    cp = workload(manifests, CONTROL_PLANE)
    (init,) = cp.pod["initContainers"]
    assert init["command"][:3] == ["tollgate", "migrate", "--check"] and "--wait" in init["command"]
    settings = Settings.from_env({"TOLLGATE_DATABASE_URL": "postgresql://x/y", **plain_env(main_container(cp))})
    assert settings.migrate_on_start is False
    job = workload(manifests, "tollgate-migrate")
    assert main_container(job)["command"] == ["tollgate", "migrate"]
    # both read the same database
    ref = container_env(main_container(job))["TOLLGATE_DATABASE_URL"]["valueFrom"]
    assert ref == container_env(init)["TOLLGATE_DATABASE_URL"]["valueFrom"]
    assert ref == container_env(main_container(cp))["TOLLGATE_DATABASE_URL"]["valueFrom"]


def test_replicas_probes_and_services(manifests: list[Resource], overlay: str) -> None:
    cp, worker = workload(manifests, CONTROL_PLANE), workload(manifests, WORKER)
    assert cp.resource["spec"]["replicas"] == (2 if overlay == "production" else 1)
    cp_main, worker_main = main_container(cp), main_container(worker)
    assert cp_main["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert cp_main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker_main["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # each probe's port is the port the command line listens on
    assert cp.port(cp_main["readinessProbe"]["httpGet"]["port"]) == int(
        cp_main["command"][cp_main["command"].index("--port") + 1]
    )
    status_port = int(worker_main["command"][worker_main["command"].index("--status-port") + 1])
    for probe in ("readinessProbe", "livenessProbe"):
        assert worker.port(worker_main[probe]["httpGet"]["port"]) == status_port
    services = of_kind(manifests, "Service")
    expected = {"tollgate-traffic": "LoadBalancer" if overlay == "production" else "NodePort"}
    expected |= {"tollgate-control-plane": "ClusterIP", "tollgate-worker-status": "ClusterIP"}
    for name, kind in expected.items():
        service = services[name]
        assert service["spec"].get("type", "ClusterIP") == kind, name
        backing = [w for w in workloads(manifests) if selects({"matchLabels": service["spec"]["selector"]}, w.labels)]
        assert len(backing) == 1, f"{name} selects {[w.name for w in backing]}"
        for entry in service["spec"]["ports"]:
            backing[0].port(entry["targetPort"])  # KeyError: a Service to a port no container has
    assert services["tollgate-worker-status"]["spec"]["clusterIP"] == "None"  # governs the StatefulSet
    assert worker.resource["spec"]["serviceName"] == "tollgate-worker-status"


def test_autoscaler_and_disruption_budgets_target_the_workers(manifests: list[Resource]) -> None:
    worker = workload(manifests, WORKER)
    (hpa,) = of_kind(manifests, "HorizontalPodAutoscaler").values()
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("StatefulSet", WORKER)
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in worker.resource["spec"], "the HPA owns the worker count: an applied one would reset it"
    budgets = of_kind(manifests, "PodDisruptionBudget")
    for name in (WORKER, CONTROL_PLANE):
        covered = [b for b in budgets.values() if selects(b["spec"]["selector"], workload(manifests, name).labels)]
        assert len(covered) == 1 and covered[0]["spec"]["maxUnavailable"] == 1, name


def test_termination_grace_covers_the_workers_drain(manifests: list[Resource]) -> None:
    worker = workload(manifests, WORKER)
    container = main_container(worker)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    settings = WorkerSettings.from_env(plain_env(container))
    assert settings.shutdown_timeout == 30.0  # set in the manifest, not left to a default that may move
    drain = pre_stop + settings.shutdown_timeout + LISTEN_SETTLE + USAGE_DELIVERY_AT_SHUTDOWN
    grace = worker.pod["terminationGracePeriodSeconds"]
    assert drain < grace, f"preStop {pre_stop} + drain needs {drain} s, the pod gets {grace} s before SIGKILL"
    assert pre_stop >= 5  # endpoints and load balancers drop the pod before it stops accepting
    cp = workload(manifests, CONTROL_PLANE)
    cp_pre_stop = float(main_container(cp)["lifecycle"]["preStop"]["exec"]["command"][1])
    assert cp_pre_stop + GRACEFUL_SHUTDOWN_SECONDS < cp.pod["terminationGracePeriodSeconds"]


def test_network_policies_keep_the_control_plane_and_status_ports_private(manifests: list[Resource]) -> None:
    cp, worker = workload(manifests, CONTROL_PLANE), workload(manifests, WORKER)
    ns = cp.namespace
    admin_port, traffic, status = cp.port("admin"), worker.port("traffic"), worker.port("status")

    def pod_of(name: str) -> Peer:
        return Peer(ns, workload(manifests, name).labels)

    allowed = {
        "worker": pod_of(WORKER),
        "apply-config job": pod_of("tollgate-apply-config"),
        "admin-labelled pod": Peer(ns, {"tollgate.io/admin": "true"}),
        "pod of an admin namespace": Peer("ops", {"app": "prometheus"}, {"tollgate.io/admin": "true"}),
    }
    denied = {
        "migration job": pod_of("tollgate-migrate"),
        "another pod of the namespace": Peer(ns, {"app": "shop"}),
        "admin-labelled pod of another namespace": Peer("other", {"tollgate.io/admin": "true"}),
        "pod of another namespace": Peer(
            "other", {"app.kubernetes.io/component": "worker", "app.kubernetes.io/name": "tollgate"}
        ),
    }
    for who, peer in allowed.items():
        assert ingress_allowed(manifests, cp, admin_port, peer), f"{who} cannot reach the control plane"
    for who, peer in denied.items():
        assert not ingress_allowed(manifests, cp, admin_port, peer), f"{who} reaches the admin API / worker channel"
    # workers: traffic from anyone (the load balancer), status from admins only
    for peer in (*allowed.values(), *denied.values(), Peer("internet-facing", {})):
        assert ingress_allowed(manifests, worker, traffic, peer)
    assert ingress_allowed(manifests, worker, status, allowed["pod of an admin namespace"])
    assert not ingress_allowed(manifests, worker, status, denied["another pod of the namespace"])
    # the policies select exactly these pods: the Jobs and the dev dependencies are left alone
    for policy in of_kind(manifests, "NetworkPolicy").values():
        chosen = [w.name for w in workloads(manifests) if selects(policy["spec"]["podSelector"], w.labels)]
        assert chosen in ([CONTROL_PLANE], [WORKER]), f"{policy['metadata']['name']} selects {chosen}"


def test_workloads_are_hardened_and_bounded(manifests: list[Resource]) -> None:
    user = re.findall(r"^USER\s+(\d+):(\d+)", DOCKERFILE.read_text(), re.M)[-1]
    for w in workloads(manifests):
        ours = [c for c in w.containers() if is_tollgate(c)]
        for container in w.containers():
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), f"{w.name}/{container['name']} {bound}"
        if not ours:
            continue  # dev's postgres and redis: their images' own users
        assert w.pod["automountServiceAccountToken"] is False  # nothing of ours talks to the Kubernetes API
        pod_security = w.pod["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        # the image's user, by number (runAsNonRoot cannot check a name)
        assert (str(pod_security["runAsUser"]), str(pod_security["runAsGroup"])) == user
        for container in ours:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, f"{w.name}/{container['name']}"
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]


def test_worker_cache_and_spool_are_on_a_volume_that_comes_back_with_the_pod(manifests: list[Resource]) -> None:
    worker = workload(manifests, WORKER)
    assert worker.kind == "StatefulSet"
    container = main_container(worker)
    cache_dir = plain_env(container)["TOLLGATE_WORKER_CACHE_DIR"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == cache_dir]
    claims = {c["metadata"]["name"]: c for c in worker.resource["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims, (
        "the cache dir must be the pod's PersistentVolumeClaim (an emptyDir dies with the pod)"
    )
    assert claims[mount["name"]]["spec"]["accessModes"] == ["ReadWriteOnce"]  # one owner per spool
    assert worker.resource["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    settings = WorkerSettings.from_env(plain_env(container))
    assert settings.cache_file.is_relative_to(cache_dir) and settings.usage_spool_dir.is_relative_to(cache_dir)
    assert worker.pod["securityContext"]["fsGroup"] == worker.pod["securityContext"]["runAsGroup"]  # writable


def test_everything_a_container_writes_is_a_volume(manifests: list[Resource]) -> None:
    # a read-only root filesystem: each directory Tollgate writes must be mounted
    for w in workloads(manifests):
        for container in w.containers():
            if not is_tollgate(container):
                continue
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            env = plain_env(container)
            for key in ("TOLLGATE_DATA_DIR", "TOLLGATE_WORKER_CACHE_DIR"):
                if key in env:
                    assert env[key] in mounts, f"{w.name}: {key}={env[key]} is on the read-only root filesystem"
            if container["command"][:2] in (["tollgate", "control-plane"], ["tollgate", "worker"]):
                assert "/tmp" in mounts


def test_prometheus_annotations_name_the_metrics_ports(manifests: list[Resource]) -> None:
    for name in (CONTROL_PLANE, WORKER):
        w = workload(manifests, name)
        notes = w.annotations
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
        w.port(int(notes["prometheus.io/port"]))


def test_gateway_files_are_valid_declarative_config(manifests: list[Resource]) -> None:
    import json

    schema = json.loads((ROOT / "docs" / "gateway.schema.json").read_text())
    (config_map,) = of_kind(manifests, "ConfigMap").values()
    assert config_map["metadata"]["name"].startswith("tollgate-gateway-")  # content-hashed: a change re-runs the Job
    jsonschema.validate(yaml.safe_load(config_map["data"]["gateway.yaml"]), schema)
    job = workload(manifests, "tollgate-apply-config")
    volumes = {v["name"]: v for v in job.pod["volumes"]}
    (mount,) = [m for m in main_container(job)["volumeMounts"] if volumes[m["name"]].get("configMap")]
    assert volumes[mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert main_container(job)["command"] == ["tollgate", "apply", "-f", f"{mount['mountPath']}/gateway.yaml"]


# --- the containers, run ------------------------------------------------------------------------------


@pytest.fixture
def database() -> Iterator[str]:
    base = make_url(POSTGRES_URL)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"tollgate_k8s_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        require_service("PostgreSQL", False, str(exc).splitlines()[0])
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=3.0, **kwargs)


def _ok(url: str) -> bool:
    try:
        return _get(url).status_code == 200
    except httpx.TransportError:
        return False


def test_the_overlay_runs_and_serves_traffic(
    overlay: str, manifests: list[Resource], tmp_path: Path, database: str
) -> None:
    require_service("Redis", port_open(6379, timeout=1))
    secret = {key: uuid.uuid4().hex for key in ("cluster-token", "admin-token", "secret-key", "postgres-password")}
    secret |= {"database-url": database, "redis-url": "redis://127.0.0.1:6379/0"}
    cluster = Cluster(tmp_path)
    try:
        # a gateway.yaml target outside the cluster (production's example service) gets an echo backend
        config = yaml.safe_load(next(iter(of_kind(manifests, "ConfigMap").values()))["data"]["gateway.yaml"])
        external = {}
        for upstream in config["upstreams"]:
            for target in upstream["targets"]:
                if target["host"].split(".")[0] not in of_kind(manifests, "Service"):
                    external[(target["host"], int(target["port"]))] = cluster.echo(target["host"].split(".")[0]).port
        pods = LocalPods(manifests, secret, tmp_path, cluster, external=external)

        # backends that are part of the overlay (dev's demo): started and ready first
        others = [w for w in workloads(manifests) if w.kind == "Deployment" and w.name != CONTROL_PLANE]
        for w in others:
            for pod in pods.pods_of(w.name):
                proc = pods.start(pod, main_container(w))
                probe = main_container(w)["readinessProbe"]["httpGet"]
                cluster.wait_http(proc, pods.http(pod, probe["port"], probe["path"]))

        # 1. the control plane's init step waits while the schema is behind...
        cp_pods = pods.pods_of(CONTROL_PLANE)
        cp = workload(manifests, CONTROL_PLANE)
        (init,) = cp.pod["initContainers"]
        waiting = [pods.start(pod, init) for pod in cp_pods]
        for proc in waiting:
            wait_until(
                lambda p=proc: "waiting up to" in p.log(), timeout=30, what=f"{proc.name} to wait for the schema"
            )
            assert proc.alive()
        # 2. ...until the migration Job has run
        job = workload(manifests, "tollgate-migrate")
        pods.run(pods.pods_of(job.name)[0], main_container(job))
        for proc in waiting:
            assert proc.proc is not None and proc.proc.wait(timeout=30) == 0, proc.log()
        # 3. then the replicas start, ready on /healthz
        cp_main = main_container(cp)
        replicas = [(pods.start(pod, cp_main), pods.http(pod, "admin", "/healthz")) for pod in cp_pods]
        for proc, url in replicas:
            wait_until(lambda p=proc, u=url: _alive_and_ok(p, u), timeout=30, what=f"{proc.name} ready")

        # 4. a worker: ready once it has a config from the control plane (through the Service's name)
        worker = workload(manifests, WORKER)
        (worker_pod,) = pods.pods_of(WORKER)
        worker_main = main_container(worker)
        proc = pods.start(worker_pod, worker_main)
        ready = pods.http(worker_pod, "status", "/healthz")
        wait_until(lambda: _alive_and_ok(proc, ready), timeout=30, what="worker ready")

        # 5. the GitOps Job: waits for the control plane, applies gateway.yaml
        apply_job = workload(manifests, "tollgate-apply-config")
        (apply_pod,) = pods.pods_of(apply_job.name)
        for container in apply_job.containers():
            applied = pods.run(apply_pod, container)
        assert "applied: revision" in applied.log()

        # 6. a request through the traffic Service reaches the backend of gateway.yaml
        traffic = of_kind(manifests, "Service")["tollgate-traffic"]["spec"]["ports"][0]["port"]
        base = f"http://127.0.0.1:{pods.service_port('tollgate-traffic', traffic)}"
        api = config["apis"][0]["base_path"]
        backend = config["upstreams"][0]["targets"][0]["host"].split(".")[0]
        expected = "demo" if overlay == "dev" else backend

        def through() -> bool:
            r = _get(f"{base}{api}/hello")
            return r.status_code == 200 and r.json()["server"] == expected

        wait_until(through, timeout=15, what="a request through the worker to the backend")

        # every probe path and the metrics path answer on the port the manifest names
        for w, pod in [(cp, cp_pods[0]), (worker, worker_pod)]:
            container = main_container(w)
            for probe in ("readinessProbe", "livenessProbe"):
                check = container[probe]["httpGet"]
                assert _get(pods.http(pod, check["port"], check["path"])).status_code == 200, (w.name, probe)
            metrics = _get(
                pods.http(pod, int(w.annotations["prometheus.io/port"]), w.annotations["prometheus.io/path"])
            )
            assert metrics.status_code == 200 and "# TYPE tollgate_" in metrics.text, w.name

        # the worker reported in under its pod name (fieldRef metadata.name), and its usage is in
        admin = {"authorization": f"Bearer {secret['admin-token']}"}
        nodes = _get(pods.http(cp_pods[0], "admin", "/v1/nodes"), headers=admin).json()
        assert worker_pod.name in {n["id"] for n in nodes["items"]}

        # 7. the worker pod is deleted: SIGTERM after the preStop, the drain fits the grace period
        pre_stop = float(worker_main["lifecycle"]["preStop"]["exec"]["command"][1])
        rc = proc.stop(timeout=worker.pod["terminationGracePeriodSeconds"] - pre_stop)
        assert rc == 0, proc.log()
        # ...and comes back under the same name, with the control plane down: its volume (the
        # StatefulSet's claim for that name) holds the last-known-good config, so it serves at once
        for cp_proc in [p for p in cluster.procs if p.name.endswith(f".{cp_main['name']}")]:
            cp_proc.stop()
        again = pods.start(worker_pod, worker_main)
        wait_until(lambda: _alive_and_ok(again, ready), timeout=30, what="restarted worker ready from its cache")
        wait_until(through, timeout=15, what="traffic through the restarted worker")
        again.kill()  # its shutdown would spend USAGE_DELIVERY_AT_SHUTDOWN on the control plane it cannot reach
    finally:
        cluster.close()


def _alive_and_ok(proc: Any, url: str) -> bool:
    if not proc.alive():
        raise AssertionError(f"{proc.name} exited:\n{proc.log()}")
    return _ok(url)
