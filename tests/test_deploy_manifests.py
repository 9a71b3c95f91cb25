"""deploy/k8s: what the rendered manifests promise, checked offline.

Every overlay is rendered with `kubectl kustomize` (as `make check-deploy` does) and the objects
are read back with PyYAML: the numbers that must agree with the engine (probes, drain, worker
count, autoscaling target) and with the image (its user) are checked here, in every overlay.
Schema validation, checkov and hadolint are `make check-deploy`'s job (deploy/check.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.debian import unavailable

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
RENDERS = {
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "keda": K8S / "extras" / "keda",
}
IMAGE_UID = 10001  # the image's documented user and group (docs/container.md)
SATURATION = "fastinfer_saturation"
SATURATION_TARGET = Decimal("0.7")  # docs/observability.md, docs/deployment.md
HTTP_PORT, HEALTH_PORT, GRPC_PORT = 8000, 8001, 8002
# On SIGTERM, after the drain, each server process gives a failing prediction-log sink up to
# 10 s before it counts the rest as dropped (docs/observability.md); +5 s for the processes to exit.
FLUSH_S, EXIT_S = 10, 5

Doc = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl") or (
        "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None
    )
    if path is None:
        unavailable(
            "needs kubectl (kubectl kustomize renders the overlays): install it, see "
            "https://kubernetes.io/docs/tasks/tools/"
        )
    return path


def render(directory: Path) -> list[Doc]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {name: render(directory) for name, directory in RENDERS.items()}


@pytest.fixture(params=sorted(RENDERS))
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered[request.param]


def only(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(docs: list[Doc]) -> set[str]:
    return {doc["kind"] for doc in docs}


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = only(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Doc]) -> Doc:
    (main,) = pod_spec(docs)["containers"]
    return main


def env(main: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in main.get("env", [])}


def env_int(main: Doc, name: str) -> int:
    return int(env(main)[name]["value"])


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity, for the suffixes these manifests use (m, Ki/Mi/Gi)."""
    text = str(value)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    if text.endswith("m"):
        return Decimal(text[:-1]) / 1000
    if text[-2:] in binary:
        return Decimal(text[:-2]) * binary[text[-2:]]
    return Decimal(text)


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def image_uid() -> tuple[int, int | None]:
    """(uid, gid or None) of the image: deploy/Dockerfile's last USER, else the documented 10001."""
    if not DOCKERFILE.exists():
        return IMAGE_UID, IMAGE_UID
    text = DOCKERFILE.read_text()
    users = re.findall(r"^\s*USER\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert users, "deploy/Dockerfile must set a USER (the pods run as that UID)"
    user, _, group = users[-1].partition(":")
    if not user.isdigit():  # a name: take the UID it was created with
        created = re.search(r"(?:--uid|-u)[ =]+(\d+)", text)
        assert created, f"deploy/Dockerfile: USER {user} without a numeric --uid to compare"
        user = created.group(1)
    return int(user), int(group) if group.isdigit() else None


def test_every_overlay_has_the_objects_it_needs(rendered: dict[str, list[Doc]]) -> None:
    common = {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"}
    common |= {"ServiceMonitor"}
    assert kinds(rendered["dev"]) == common  # one fixed replica: no autoscaler
    assert kinds(rendered["prod"]) == common | {"HorizontalPodAutoscaler"}
    # KEDA makes its own HPA from the ScaledObject: never two autoscalers on one Deployment.
    assert kinds(rendered["keda"]) == common | {"ScaledObject"}
    for docs in rendered.values():
        namespaces = {doc["metadata"].get("namespace") for doc in docs}
        assert len(namespaces) == 1 and None not in namespaces


def test_pods_run_as_the_image_user_with_a_locked_down_container(docs: list[Doc]) -> None:
    uid, gid = image_uid()
    pod = pod_spec(docs)
    main = container(docs)
    for context in (pod["securityContext"], main["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == uid
        if gid is not None:
            assert context["runAsGroup"] == gid
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert uid >= 10000  # clear of host users (checkov CKV_K8S_40)
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    account = only(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    # A Service named `fastinfer` would otherwise inject FASTINFER_PORT=tcp://... and friends.
    assert pod["enableServiceLinks"] is False


def test_a_read_only_root_still_has_writable_tmp_and_shared_memory(docs: list[Doc]) -> None:
    pod = pod_spec(docs)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(docs)["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The workers' shared state (Prometheus multiprocess files, FASTINFER_RUN_DIR) lives here.
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    for volume in volumes.values():
        assert "sizeLimit" in volume["emptyDir"]


def test_probes_ask_the_health_process_on_its_own_port(docs: list[Doc]) -> None:
    main = container(docs)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert ports == {"http": HTTP_PORT, "health": HEALTH_PORT, "grpc": GRPC_PORT}
    assert env_int(main, "FASTINFER_PORT") == HTTP_PORT
    assert env_int(main, "FASTINFER_HEALTH_PORT") == HEALTH_PORT
    assert env_int(main, "FASTINFER_GRPC_PORT") == GRPC_PORT
    assert env(main)["FASTINFER_HOST"]["value"] == "0.0.0.0"

    def target(probe: str) -> tuple[str, int]:
        get = main[probe]["httpGet"]
        port = get["port"]
        return get["path"], ports[port] if isinstance(port, str) else port

    assert target("startupProbe") == ("/livez", HEALTH_PORT)
    assert target("livenessProbe") == ("/livez", HEALTH_PORT)
    assert target("readinessProbe") == ("/readyz", HEALTH_PORT)


def test_probe_timing_follows_the_engines_own_thresholds(docs: list[Doc]) -> None:
    main = container(docs)
    liveness, readiness, startup = (
        main["livenessProbe"],
        main["readinessProbe"],
        main["startupProbe"],
    )
    loop_block_s = env_int(main, "FASTINFER_LOOP_BLOCK_S")
    watchdog_s = env_int(main, "FASTINFER_WATCHDOG_S")
    assert loop_block_s < watchdog_s
    # The health process judges a wedge (loop blocked past loop_block_s, inference stalled past
    # watchdog_s); the probe only relays it: checked at least that often, and never restarting
    # a pod for one lost answer.
    assert liveness["periodSeconds"] <= loop_block_s
    assert liveness["failureThreshold"] >= 2
    # A restart follows a wedge within loop_block_s + failureThreshold x periodSeconds.
    assert loop_block_s + liveness["failureThreshold"] * liveness["periodSeconds"] <= 60
    for probe in (liveness, readiness, startup):
        assert 1 <= probe["timeoutSeconds"] <= 2  # the health process answers in milliseconds
    for probe in (liveness, readiness):
        assert probe["timeoutSeconds"] < probe["periodSeconds"]
    # Readiness follows a replaced worker or a drain faster than liveness acts.
    assert readiness["periodSeconds"] < liveness["periodSeconds"]
    # The startup window covers the interpreter starting on a throttled CPU; model loading is
    # gated by readiness (the health port answers /livez while the models load).
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_the_grace_period_covers_the_prestop_sleep_and_the_drain(docs: list[Doc]) -> None:
    pod = pod_spec(docs)
    main = container(docs)
    pre_stop = main["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_delay = env_int(main, "FASTINFER_DRAIN_DELAY_S")
    drain_timeout = env_int(main, "FASTINFER_DRAIN_TIMEOUT_S")
    assert pre_stop >= 5  # endpoint removal reaches kube-proxy and ingresses in a few seconds
    assert drain_timeout == 25  # the documented default the numbers are built on
    needed = pre_stop + drain_delay + drain_timeout + FLUSH_S + EXIT_S
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain_timeout


def test_rolling_updates_never_lower_capacity(docs: list[Doc]) -> None:
    deployment = only(docs, "Deployment")
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert str(strategy["rollingUpdate"]["maxUnavailable"]) in {"0", "0%"}
    assert str(strategy["rollingUpdate"]["maxSurge"]) not in {"0", "0%"}
    assert deployment["spec"]["minReadySeconds"] > 0
    if "HorizontalPodAutoscaler" in kinds(docs) or "ScaledObject" in kinds(docs):
        # An applied `replicas` would reset the autoscaler's count on every apply.
        assert "replicas" not in deployment["spec"]
    else:
        assert deployment["spec"]["replicas"] == 1


def test_workers_follow_the_cpu_limit_and_requests_equal_limits(docs: list[Doc]) -> None:
    main = container(docs)
    workers = env(main)["FASTINFER_WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert workers["resource"] == "limits.cpu"
    assert workers["containerName"] == main["name"]
    assert quantity(workers["divisor"]) == 1
    resources = main["resources"]
    for resource in ("cpu", "memory"):
        assert quantity(resources["requests"][resource]) == quantity(resources["limits"][resource])
    cpus = quantity(resources["limits"]["cpu"])
    assert cpus == cpus.to_integral_value() and cpus >= 1  # whole CPUs: one worker each
    # The memory-backed /dev/shm counts against the memory limit: it must fit well inside.
    shm = next(v for v in pod_spec(docs)["volumes"] if v["emptyDir"].get("medium") == "Memory")
    assert quantity(shm["emptyDir"]["sizeLimit"]) * 2 <= quantity(resources["limits"]["memory"])


def test_network_policy_opens_http_and_grpc_to_all_and_metrics_to_monitoring_only(
    docs: list[Doc],
) -> None:
    policy = only(docs, "NetworkPolicy")["spec"]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["podSelector"], pod_labels)
    assert policy["policyTypes"] == ["Ingress"]
    rules = {}
    for rule in policy["ingress"]:
        (port,) = rule["ports"]
        assert port["protocol"] == "TCP"
        rules[port["port"]] = rule.get("from")
    assert set(rules) == {HTTP_PORT, HEALTH_PORT, GRPC_PORT}
    assert rules[HTTP_PORT] is None  # from anywhere
    assert rules[GRPC_PORT] is None
    assert rules[HEALTH_PORT] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def test_service_and_service_monitor_scrape_the_health_port(docs: list[Doc]) -> None:
    service = only(docs, "Service")
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[key] == value for key, value in service["spec"]["selector"].items())
    targets = {port["name"]: port["targetPort"] for port in service["spec"]["ports"]}
    assert targets == {"http": "http", "grpc": "grpc", "metrics": "health"}
    grpc = next(port for port in service["spec"]["ports"] if port["name"] == "grpc")
    assert grpc["appProtocol"] == "kubernetes.io/h2c"  # HTTP/2 without TLS, as gRPC here is
    monitor = only(docs, "ServiceMonitor")["spec"]
    assert matches(monitor["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


def test_disruption_budget_evicts_one_pod_at_a_time(docs: list[Doc]) -> None:
    budget = only(docs, "PodDisruptionBudget")["spec"]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(budget["selector"], pod_labels)
    # maxUnavailable, not minAvailable: a single dev replica never blocks a node drain.
    assert budget["maxUnavailable"] == 1 and "minAvailable" not in budget
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pods_spread_over_nodes_and_in_prod_over_zones(rendered: dict[str, list[Doc]]) -> None:
    for name, docs in rendered.items():
        pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        spread = {c["topologyKey"]: c for c in pod_spec(docs)["topologySpreadConstraints"]}
        for constraint in spread.values():
            assert matches(constraint["labelSelector"], pod_labels)
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]
        assert "kubernetes.io/hostname" in spread
        if name in {"prod", "keda"}:
            zone = spread["topology.kubernetes.io/zone"]
            assert zone["whenUnsatisfiable"] == "DoNotSchedule" and zone["maxSkew"] == 1


def test_hpa_scales_on_saturation_at_the_documented_target(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["prod"]
    hpa = only(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": only(docs, "Deployment")["metadata"]["name"],
    }
    assert spec["minReplicas"] >= 3 and spec["maxReplicas"] > spec["minReplicas"]
    pods = [m["pods"] for m in spec["metrics"] if m["type"] == "Pods"]
    assert len(pods) == 1
    assert pods[0]["metric"]["name"] == SATURATION
    assert pods[0]["target"]["type"] == "AverageValue"
    assert quantity(pods[0]["target"]["averageValue"]) == SATURATION_TARGET
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    # The metric exists: the server exports it under this name.
    observability = REPO / "src" / "fastinfer" / "observability"
    source = "".join(p.read_text() for p in sorted(observability.glob("metrics*.py")))
    assert f'"{SATURATION}"' in source


def test_prometheus_adapter_rule_serves_the_hpas_metric_per_pod() -> None:
    values = yaml.safe_load((K8S / "extras" / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["seriesQuery"].startswith(SATURATION + "{")
    assert rule["name"]["as"] == SATURATION
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert "<<.GroupBy>>" in rule["metricsQuery"]


def test_keda_scales_on_the_same_signal_and_target(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["keda"]
    scaled = only(docs, "ScaledObject")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == only(docs, "Deployment")["metadata"]["name"]
    prod_hpa = only(rendered["prod"], "HorizontalPodAutoscaler")["spec"]
    assert spec["minReplicaCount"] == prod_hpa["minReplicas"]
    assert spec["maxReplicaCount"] == prod_hpa["maxReplicas"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    # AverageValue: KEDA divides the query by the pod count, so sum(saturation) / 0.7 pods.
    assert trigger["metricType"] == "AverageValue"
    assert Decimal(trigger["metadata"]["threshold"]) == SATURATION_TARGET
    query = trigger["metadata"]["query"]
    assert query.startswith("sum(") and SATURATION in query
    # kustomize does not rewrite the namespace inside the query: it must match by hand.
    assert f'namespace="{scaled["metadata"]["namespace"]}"' in query


def test_the_kserve_example_serves_the_image_over_the_v2_protocol(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = list(yaml.safe_load_all((K8S / "examples" / "kserve-inferenceservice.yaml").read_text()))
    runtime = only(docs, "ServingRuntime")
    service = only(docs, "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    (main,) = runtime["spec"]["containers"]
    deployment_image = container(rendered["prod"])["image"]
    assert main["image"].split(":")[0] == deployment_image.split(":")[0].split("@")[0]
    assert main["securityContext"]["runAsUser"] == image_uid()[0]
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # gRPC on the port KServe routes it to (named h2c), the one FASTINFER_GRPC_PORT sets.
    grpc_port = next(p["containerPort"] for p in main["ports"] if p.get("name") == "h2c")
    assert {e["name"]: e["value"] for e in main["env"]}["FASTINFER_GRPC_PORT"] == str(grpc_port)


def test_the_image_is_pinned(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        image = container(docs)["image"]
        assert image.startswith("ghcr.io/fastinfer/fastinfer")
        reference = image.rsplit("/", 1)[-1]
        assert "@sha256:" in reference or (":" in reference and not reference.endswith(":latest"))
