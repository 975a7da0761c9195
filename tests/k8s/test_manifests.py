"""k8s/: every variant rendered with kustomize, validated offline against the Kubernetes
1.33 schemas (kubernetes-validate, strict: unknown fields are errors), and checked for
what the deployment relies on: a native sidecar probed by gRPC on its health port, a
locked-down security context, pinned images, sized resources, a generated ConfigMap,
secrets from Secrets, and a grace period that covers the drain. The rendered configs
are then booted for real: the sidecar, and the in-cluster Redis with its ACL.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kubernetes_validate.utils import SchemaNotFoundError

from tests.k8s.conftest import K8S, VARIANTS, Render, render_dir
from tests.support.sidecar_process import ROOT, SidecarProcess, free_port
from tollgate.cli import STORE_URL_ENV
from tollgate.config import Config, parse_config
from tollgate.grpc.server import LIVENESS_SERVICE
from tollgate_client.v1 import tollgate_pb2 as pb
from tollgate_client.v1 import tollgate_pb2_grpc as pb_grpc

KUBERNETES_VERSION = "1.33"
"""kubernetes-validate ships schemas 1.25 to 1.37; 1.33 is the version asked for (native sidecars GA)."""
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Custom resources: no schema in kubernetes-validate; checked field by field below."""
UID = 10001
"""The image's user (Dockerfile) and the pod's runAsUser."""
MEASURED_RSS_MIB = {"sqlite": (164, 209), "redis": (244, 295)}
"""Per store: the sidecar's RSS with every cache full, and its highest VmHWM, under the load in k8s/README.md."""
APPS = ("base", "single", "shared-redis", "single+servicemonitor")


# --- helpers ---------------------------------------------------------------------------------------------------


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container(spec: dict[str, Any], name: str, *, init: bool) -> dict[str, Any]:
    found = [c for c in spec.get("initContainers" if init else "containers", []) if c["name"] == name]
    assert len(found) == 1, f"no {'init ' if init else ''}container {name!r}"
    return found[0]


def sidecar_and_app(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    spec = pod_spec(one(objs, "Deployment", "checkout"))
    return spec, container(spec, "tollgate", init=True), container(spec, "app", init=False)


def tollgate_config(objs: list[dict[str, Any]]) -> tuple[dict[str, Any], Config]:
    cm = one([o for o in objs if o["metadata"]["name"].startswith("tollgate-config-")], "ConfigMap")
    return cm, parse_config(cm["data"]["tollgate.yaml"], source=cm["metadata"]["name"], over_defaults=True)


def secret_value(objs: list[dict[str, Any]], name: str, key: str) -> str:
    return base64.b64decode(one(objs, "Secret", name)["data"][key]).decode()


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    assert match and match.group(2) in units, f"unexpected quantity {quantity!r}"
    return float(match.group(1)) * units[match.group(2)]


def mounts(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def volumes(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in spec.get("volumes", [])}


# --- schema --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", APPS)
def test_every_object_validates_against_the_kubernetes_schemas(render: Render, variant: str) -> None:
    objs = render(variant)
    assert objs
    errors, crds = [], []
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            crds.append(obj)
            continue
        try:
            used = kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
            continue
        except SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
            continue
        assert used == KUBERNETES_VERSION
    assert not errors, "\n".join(errors)
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names))
    # The base and the overlays need no CRD; only the optional component brings one.
    assert bool(crds) == (variant == "single+servicemonitor")


def test_the_servicemonitor_component_selects_the_sidecars_metrics_port(render: Render) -> None:
    objs = render("single+servicemonitor")
    monitor = one(objs, "ServiceMonitor")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    service = one([o for o in objs if o["kind"] == "Service" and "tollgate-metrics" in o["metadata"]["name"]],
                  "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    _, tollgate, _ = sidecar_and_app(objs)
    template_labels = one(objs, "Deployment", "checkout")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    _, config = tollgate_config(objs)
    assert {p["name"]: p["containerPort"] for p in tollgate["ports"]}[port["targetPort"]] == \
        config.telemetry.metrics_port


# --- the sidecar ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", APPS)
def test_tollgate_is_a_native_sidecar_probed_by_grpc_on_its_health_port(render: Render, variant: str) -> None:
    objs = render(variant)
    spec, tollgate, _ = sidecar_and_app(objs)
    assert tollgate["restartPolicy"] == "Always"
    assert "tollgate" not in [c["name"] for c in spec["containers"]]
    _, config = tollgate_config(objs)
    health_port = config.server.health_port
    assert health_port, "the config must turn the health listener on"
    assert config.server.health_host == "0.0.0.0", "the kubelet probes the pod IP"
    assert config.server.host == "127.0.0.1", "the API stays on loopback"
    ports = {p["name"]: p["containerPort"] for p in tollgate["ports"]}
    assert ports == {"health": health_port, "metrics": config.telemetry.metrics_port}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = tollgate[kind]
        assert not {"httpGet", "tcpSocket", "exec"} & set(probe), kind
        assert probe["grpc"]["port"] == health_port, kind
    # Startup and liveness: is the process up. Readiness: "" also follows the budget store.
    assert tollgate["startupProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert tollgate["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    assert tollgate["readinessProbe"]["grpc"].get("service", "") == ""
    startup = tollgate["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10


@pytest.mark.parametrize("variant", APPS)
def test_every_container_runs_locked_down(render: Render, variant: str) -> None:
    objs = render(variant)
    assert workloads(objs)
    for workload in workloads(objs):
        spec = pod_spec(workload)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec.get("automountServiceAccountToken") is False
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for c in all_containers(spec):
            where = f"{workload['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, where
    spec, tollgate, app = sidecar_and_app(objs)
    assert spec["securityContext"]["runAsUser"] == UID
    # The app opens the sidecar's 0600 Unix socket, so it runs as the same user.
    assert tollgate["securityContext"]["runAsUser"] == app["securityContext"]["runAsUser"] == UID


@pytest.mark.parametrize("variant", APPS)
def test_images_are_pinned(render: Render, variant: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for workload in workloads(render(variant)):
        for c in all_containers(pod_spec(workload)):
            image = c["image"]
            name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
            assert name and "/" not in tag and tag, f"{image}: no tag"
            assert tag != "latest", image
    _, tollgate, app = sidecar_and_app(render(variant))
    assert tollgate["image"] == f"ghcr.io/tollgate/tollgate:{version}"
    assert app["image"] == "registry.example.com/checkout:1.4.2"


def test_no_latest_tag_anywhere() -> None:
    files = [*K8S.rglob("*.yaml"), ROOT / "Dockerfile"]
    for path in files:
        assert not re.search(r":latest\b", path.read_text()), path


@pytest.mark.parametrize("variant", APPS)
def test_resources_are_requested_and_memory_is_limited(render: Render, variant: str) -> None:
    for workload in workloads(render(variant)):
        for c in all_containers(pod_spec(workload)):
            where = f"{workload['metadata']['name']}/{c['name']}"
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
            assert mebibytes(resources["limits"]["memory"]) >= mebibytes(resources["requests"]["memory"]), where
    objs = render(variant)
    _, tollgate, _ = sidecar_and_app(objs)
    _, config = tollgate_config(objs)
    steady, peak = MEASURED_RSS_MIB[config.store.kind]
    request = mebibytes(tollgate["resources"]["requests"]["memory"])
    limit = mebibytes(tollgate["resources"]["limits"]["memory"])
    assert request >= steady, "the request covers the measured use with every cache full"
    assert limit >= 1.5 * peak, "the limit is at least 1.5 x the measured peak"
    readme = (K8S / "README.md").read_text()
    assert f"{steady} MiB" in readme and f"{peak} MiB" in readme, "k8s/README.md states the figures"


# --- config, secrets, env ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", APPS)
def test_the_config_comes_from_a_generated_configmap_mounted_read_only(render: Render, variant: str) -> None:
    objs = render(variant)
    spec, tollgate, _ = sidecar_and_app(objs)
    cm, config = tollgate_config(objs)
    assert re.fullmatch(r"tollgate-config-[a-z0-9]{10}", cm["metadata"]["name"]), "a content-hashed name"
    source = K8S / ("overlays/shared-redis" if variant == "shared-redis" else "base") / "tollgate.yaml"
    assert cm["data"] == {"tollgate.yaml": source.read_text()}
    (name,) = [n for n, v in volumes(spec).items() if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    # The image's entrypoint reads /etc/tollgate/tollgate.yaml (see the Dockerfile tests).
    mount = mounts(tollgate)["/etc/tollgate"]
    assert mount["name"] == name and mount["readOnly"] is True
    assert "@" not in config.store.url, "no credentials in the ConfigMap"


def test_editing_the_config_renames_the_configmap(kustomize: list[str], tmp_path: Path) -> None:
    """A change to tollgate.yaml gives the ConfigMap a new name, so the Deployment rolls its pods."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    before = one(render_dir(kustomize, copy / "base"), "Deployment")
    (copy / "base" / "tollgate.yaml").write_text((copy / "base" / "tollgate.yaml").read_text() + "# edited\n")
    after = one(render_dir(kustomize, copy / "base"), "Deployment")

    def config_volume(d: dict[str, Any]) -> str:
        return str(volumes(pod_spec(d))["tollgate-config"]["configMap"]["name"])

    assert config_volume(before) != config_volume(after)


@pytest.mark.parametrize("variant", APPS)
def test_downward_api_otel_and_secrets_reach_the_containers(render: Render, variant: str) -> None:
    objs = render(variant)
    _, tollgate, app = sidecar_and_app(objs)
    env = env_of(tollgate)
    for name, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"),
                       ("NODE_NAME", "spec.nodeName")):
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == path
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER"} <= set(env)
    assert env["TIKTOKEN_CACHE_DIR"]["value"] == "", "the root filesystem is read-only: no tiktoken cache copy"
    # The app's provider keys: from a Secret, never inline.
    (source,) = app["envFrom"]
    secret = one(objs, "Secret", source["secretRef"]["name"])
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= set(secret["data"])
    for c in (tollgate, app):
        for e in c.get("env", []):
            if re.search(r"(API_KEY|PASSWORD|SECRET|_TOKEN|STORE_URL)$", e["name"]):
                assert "secretKeyRef" in e.get("valueFrom", {}), f"{c['name']}: {e['name']} belongs in a Secret"


@pytest.mark.parametrize("variant", APPS)
def test_sockets_ledger_and_scratch_space_are_mounted_where_the_config_says(render: Render, variant: str) -> None:
    objs = render(variant)
    spec, tollgate, app = sidecar_and_app(objs)
    _, config = tollgate_config(objs)
    vols = volumes(spec)
    socket_dir = str(PurePosixPath(config.server.unix_socket).parent)
    shared = mounts(tollgate)[socket_dir]
    assert mounts(app)[socket_dir]["name"] == shared["name"] and "emptyDir" in vols[shared["name"]]
    assert not shared.get("readOnly")
    assert env_of(app)["TOLLGATE_TARGET"]["value"] == f"unix://{config.server.unix_socket}"
    assert env_of(app)["TOLLGATE_TCP_TARGET"]["value"] == f"{config.server.host}:{config.server.port}"
    assert "/tmp" in mounts(tollgate)
    if config.store.kind == "sqlite":
        ledger = mounts(tollgate)[str(PurePosixPath(config.store.path).parent)]
        assert not ledger.get("readOnly")
        claim = vols[ledger["name"]].get("persistentVolumeClaim")
        if variant.startswith("single"):
            pvc = one(objs, "PersistentVolumeClaim", claim["claimName"])
            assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        else:
            assert "emptyDir" in vols[ledger["name"]]


@pytest.mark.parametrize("variant", ["single", "single+servicemonitor"])
def test_the_single_overlay_never_runs_two_writers_on_one_ledger(render: Render, variant: str) -> None:
    deployment = one(render(variant), "Deployment", "checkout")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_shared_overlay_takes_the_redis_url_from_a_secret(render: Render) -> None:
    objs = render("shared-redis")
    spec, tollgate, _ = sidecar_and_app(objs)
    deployment = one(objs, "Deployment", "checkout")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    _, config = tollgate_config(objs)
    assert config.store.kind == "redis"
    assert "@" not in config.store.url, "the ConfigMap holds no credentials"
    ref = env_of(tollgate)[STORE_URL_ENV]["valueFrom"]["secretKeyRef"]
    url = secret_value(objs, ref["name"], ref["key"])
    assert urlsplit(url).scheme in ("redis", "rediss") and urlsplit(url).password
    # The embedded ledger is gone with the Redis store.
    assert "ledger" not in volumes(spec)
    assert "/var/lib/tollgate" not in mounts(tollgate)
    one(objs, "PodDisruptionBudget")


def test_the_redis_component_persists_and_matches_the_url_secret(render: Render) -> None:
    objs = render("shared-redis")
    redis = one(objs, "StatefulSet", "tollgate-redis")
    conf_cm = one([o for o in objs if o["metadata"]["name"].startswith("tollgate-redis-config-")], "ConfigMap")
    conf = conf_cm["data"]["redis.conf"]
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"):
        assert re.search(rf"^{line}$", conf, re.M), line
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    (redis_container,) = pod_spec(redis)["containers"]
    assert mounts(redis_container)["/data"]["name"] == "data"
    # The placeholder URL points at the component's Service with the component's placeholder password.
    _, tollgate, _ = sidecar_and_app(objs)
    ref = env_of(tollgate)[STORE_URL_ENV]["valueFrom"]["secretKeyRef"]
    url = urlsplit(secret_value(objs, ref["name"], ref["key"]))
    service = one(objs, "Service", url.hostname)
    assert service["spec"]["ports"][0]["port"] == url.port
    acl_secret = one([o for o in objs if o["metadata"]["name"].startswith("tollgate-redis-acl-")], "Secret")
    acl = base64.b64decode(acl_secret["data"]["users.acl"]).decode()
    assert f"user {url.username} on >{url.password} ~tg:*" in acl
    assert re.search(r"^user default off\b", acl, re.M)
    # Only the pods with a sidecar may reach it.
    policy = one(objs, "NetworkPolicy", "tollgate-redis")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["spec"]["ingress"]
    app_labels = one(objs, "Deployment", "checkout")["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= app_labels.items()
    assert rule["ports"] == [{"port": url.port, "protocol": "TCP"}]


@pytest.mark.parametrize("variant", APPS)
def test_the_grace_period_covers_the_apps_drain_and_then_tollgates(render: Render, variant: str) -> None:
    objs = render(variant)
    spec, _, app = sidecar_and_app(objs)
    _, config = tollgate_config(objs)
    grace = spec["terminationGracePeriodSeconds"]
    # A native sidecar gets SIGTERM only after the app has exited: the app's preStop and drain come first.
    app_stop = app["lifecycle"]["preStop"]["sleep"]["seconds"] + int(env_of(app)["SHUTDOWN_GRACE_SECONDS"]["value"])
    assert grace > config.server.grace_period_s
    assert grace >= app_stop + config.server.grace_period_s + 5, (grace, app_stop, config.server.grace_period_s)


@pytest.mark.parametrize("variant", APPS)
def test_prometheus_annotations_name_the_metrics_endpoint(render: Render, variant: str) -> None:
    objs = render(variant)
    annotations = one(objs, "Deployment", "checkout")["spec"]["template"]["metadata"]["annotations"]
    _, config = tollgate_config(objs)
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(config.telemetry.metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert config.telemetry.metrics_host == "0.0.0.0"


# --- the rendered configs, booted ----------------------------------------------------------------------------


def _local_config(objs: list[dict[str, Any]], path: Path) -> tuple[Path, int, int]:
    """The rendered tollgate.yaml with this machine's free ports (and metrics on loopback)."""
    cm, _ = tollgate_config(objs)
    data = yaml.safe_load(cm["data"]["tollgate.yaml"])
    health_port, metrics_port = free_port(), free_port()
    data["server"]["health_port"] = health_port
    data["telemetry"] = {"metrics_port": metrics_port, "metrics_host": "127.0.0.1"}
    # Routing is not under test here: keep the sidecar off the classifier model file.
    data.setdefault("routing", {})["classifier"] = "none"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, health_port, metrics_port


def _exercise(sidecar: SidecarProcess, health_port: int, metrics_port: int, metrics_path: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", LIVENESS_SERVICE):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert sidecar.unix_socket is not None
    with grpc.insecure_channel(f"unix://{sidecar.unix_socket}") as channel:
        api = pb_grpc.TollgateServiceStub(channel)
        held = api.Reserve(pb.ReserveRequest(scope=pb.Scope(org_id="k8s", team_id="checkout"), model="gpt-5.4-mini",
                                             prompt=pb.Prompt(input_tokens=200)), timeout=5)
        done = api.Commit(pb.CommitRequest(reservation_id=held.reservation.reservation_id,
                                           usage=pb.Usage(input_tokens=200, output_tokens=20)), timeout=5)
        assert done.charged_nanos > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}{metrics_path}", timeout=5) as response:
        assert b"tollgate_rpc_duration_seconds" in response.read()


@pytest.mark.slow
def test_the_single_overlays_config_boots(render: Render, tmp_path: Path) -> None:
    objs = render("single")
    config, health_port, metrics_port = _local_config(objs, tmp_path / "tollgate.yaml")
    annotations = one(objs, "Deployment", "checkout")["spec"]["template"]["metadata"]["annotations"]
    with SidecarProcess(tmp_path, config=config, unix_socket=tmp_path / "tollgate.sock") as sidecar:
        _exercise(sidecar, health_port, metrics_port, annotations["prometheus.io/path"])
        code = sidecar.terminate()
    assert code == 0, sidecar.logs()


@pytest.mark.slow
@pytest.mark.redis
def test_the_shared_overlay_boots_against_the_components_redis(render: Render, tmp_path: Path) -> None:
    """redis-server with the component's redis.conf and ACL; the sidecar with the Secret's URL (host moved here)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (CI does this itself)")
    objs = render("shared-redis")
    conf = one([o for o in objs if o["metadata"]["name"].startswith("tollgate-redis-config-")], "ConfigMap")
    acl = one([o for o in objs if o["metadata"]["name"].startswith("tollgate-redis-acl-")], "Secret")
    (tmp_path / "users.acl").write_bytes(base64.b64decode(acl["data"]["users.acl"]))
    port = free_port()
    local = {"bind": "127.0.0.1", "port": str(port), "dir": str(tmp_path), "aclfile": str(tmp_path / "users.acl")}
    lines = [f"{key} {local[key]}" if (key := line.split(" ", 1)[0]) in local else line
             for line in conf["data"]["redis.conf"].splitlines()]
    (tmp_path / "redis.conf").write_text("\n".join(lines) + "\n")
    redis = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    try:
        _, tollgate, _ = sidecar_and_app(objs)
        ref = env_of(tollgate)[STORE_URL_ENV]["valueFrom"]["secretKeyRef"]
        url = urlsplit(secret_value(objs, ref["name"], ref["key"]))
        local_url = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}").geturl()
        config, health_port, metrics_port = _local_config(objs, tmp_path / "tollgate.yaml")
        deadline = time.monotonic() + 10
        while not (tmp_path / "appendonlydir").exists():  # AOF on, as the config asks
            assert redis.poll() is None, "redis-server refused the component's config"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with SidecarProcess(tmp_path, config=config, store=None, unix_socket=tmp_path / "tollgate.sock",
                            env={STORE_URL_ENV: local_url}) as sidecar:
            _exercise(sidecar, health_port, metrics_port, "/metrics")
            code = sidecar.terminate()
        assert code == 0, sidecar.logs()
        assert "(store: redis)" in sidecar.logs() and url.password not in sidecar.logs()
    finally:
        redis.terminate()
        redis.wait(10)


def test_variants_cover_every_overlay() -> None:
    overlays = {p.name for p in (K8S / "overlays").iterdir() if p.is_dir()}
    assert overlays == {name for name in VARIANTS if name != "base"}


def test_the_readmes_example_deployment_is_valid_and_wired_like_the_manifests(render: Render) -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deploy on Kubernetes"):]
    section = section[:section.index("\n## ", 1)]
    (example,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    deployment = yaml.safe_load(example)
    assert kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION
    spec = pod_spec(deployment)
    tollgate = container(spec, "tollgate", init=True)
    assert tollgate["restartPolicy"] == "Always"
    health_port = parse_config((K8S / "base" / "tollgate.yaml").read_text(), over_defaults=True).server.health_port
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert tollgate[kind]["grpc"]["port"] == health_port
    assert spec["securityContext"]["runAsUser"] == UID and spec["securityContext"]["runAsNonRoot"] is True
    for c in all_containers(spec):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "memory" in c["resources"]["limits"]
        assert not c["image"].endswith(":latest")
    base_spec, base_tollgate, _ = sidecar_and_app(render("base"))
    assert tollgate["resources"] == base_tollgate["resources"]
    assert spec["terminationGracePeriodSeconds"] == base_spec["terminationGracePeriodSeconds"]
    assert tollgate["image"] == base_tollgate["image"]
