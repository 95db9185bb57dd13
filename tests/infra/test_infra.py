"""Offline checks of infra/: every file parses and validates, and the files agree with each other.

No network, no Docker, no cluster: Kubernetes resources are validated against the schemas that
kubernetes-validate bundles, the compose file against the compose specification that
check-jsonschema vendors, and the KubeRay resources against the fields of KubeRay's ray.io/v1
API. Server flags and variables are checked against the installed MLflow, Prefect and Ray.
"""

from __future__ import annotations

import ast
import configparser
import copy
import functools
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE = INFRA / "compose" / "docker-compose.yml"
ENV_EXAMPLE = INFRA / "compose" / ".env.example"
PREFECT_YAML = INFRA / "prefect" / "prefect.yaml"
DOCKERFILE = INFRA / "Dockerfile"
AUTH_INI = INFRA / "mlflow" / "basic_auth.ini"
README = INFRA / "README.md"

IMAGE = "ghcr.io/seqlab/seqlab:0.1.0"
K8S_VERSION = "1.33"
MLFLOW_PORT, PREFECT_PORT = 5000, 4200
RAY_GCS_PORT, RAY_DASHBOARD_PORT, RAY_CLIENT_PORT = 6379, 8265, 10001
PUBLISHED_PORTS = {MLFLOW_PORT, PREFECT_PORT, RAY_GCS_PORT, RAY_DASHBOARD_PORT, RAY_CLIENT_PORT}
SEQLAB_HOME_VOLUME = "seqlab-home"

# Environment variables whose value is a credential: they must come from a Secret or ${VAR}.
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|AUTH_STRING|ACCESS_KEY|BACKEND_STORE_URI")

DEPLOYMENTS = {
    # deployment name: (entrypoint, flow name, parameters)
    "run-study": (
        "pipelines/ops/deployments.py:study",
        "seqlab-study",
        {"spec", "trials_per_variant", "seeds", "max_epochs"},
    ),
    "prepare-data": (
        "pipelines/ops/deployments.py:prepare_data",
        "seqlab-prepare-data",
        {"task", "options", "seed"},
    ),
    "report": ("pipelines/ops/deployments.py:report", "seqlab-report", {"study", "run_id"}),
}


# --- loading ------------------------------------------------------------------------------


@functools.cache
def _parsed(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def load_all(path: Path) -> list[Any]:
    """Every document of a (multi-document) YAML file, empty ones dropped; a copy to modify."""
    return copy.deepcopy(_parsed(path))


def yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"})


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    """(file, resource) for every Kubernetes object under infra/k8s (not the Kustomization)."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in load_all(path)
        if doc.get("kind") != "Kustomization"
    ]


def core_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_resources() if not d["apiVersion"].startswith("ray.io/")]


def resource(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} under infra/k8s, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    (doc,) = load_all(COMPOSE)
    return doc


def prefect_project() -> dict[str, Any]:
    (doc,) = load_all(PREFECT_YAML)
    return doc


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Yield (path, key, value) for every mapping entry in a nested structure."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")


def pod_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, pod template) of every pod a resource creates."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "Deployment":
        return [(doc["metadata"]["name"], spec["template"])]
    if kind == "RayCluster":
        templates = [("head", spec["headGroupSpec"]["template"])]
        return templates + [(g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
    return []


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for _, t in pod_specs(doc) for c in t["spec"]["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def flag(args: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in an argument list."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[i + 1]
    raise AssertionError(f"{name} not in {args}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def site_file(package: str, *parts: str) -> Path:
    """A file of an installed package, found without importing it (some import slowly)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    return Path(spec.origin).parent.joinpath(*parts)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a connection, so that "offline" is checked, not assumed."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("infra tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- every file parses ---------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document is a mapping"
    if path.parent == K8S:
        for doc in docs:
            assert {"apiVersion", "kind"} <= doc.keys(), f"{path}: {doc.get('kind')}"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["namespace" if doc["kind"] != "Namespace" else "name"] == (
                    "seqlab"
                ), f"{path}: {doc['kind']} is not in the seqlab namespace"


def test_yaml_files_are_found() -> None:
    # Guards the parametrized test above against silently testing nothing.
    assert {p.name for p in yaml_files()} >= {"docker-compose.yml", "prefect.yaml", "rayjob.yaml"}


# --- Kubernetes schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [d for _, d in core_resources()],
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in core_resources()],
)
def test_kubernetes_resource_validates_offline(doc: dict[str, Any], no_network: None) -> None:
    from kubernetes_validate.utils import validate

    # strict: unknown fields are errors too, which catches misspelt and misplaced keys.
    validate(doc, K8S_VERSION, strict=True)


def test_pod_templates_inside_kuberay_resources_validate(no_network: None) -> None:
    """KubeRay embeds plain core/v1 pod templates: validate them as PodTemplates."""
    from kubernetes_validate.utils import validate

    templates = pod_specs(resource("RayCluster", "seqlab"))
    assert len(templates) >= 2
    for label, template in templates:
        wrapped = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"seqlab-{label}"},
            "template": template,
        }
        validate(wrapped, K8S_VERSION, strict=True)


def test_kubernetes_validation_catches_mistakes(no_network: None) -> None:
    from kubernetes_validate.utils import ValidationError, validate

    broken = copy.deepcopy(resource("Deployment", "mlflow"))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(ValidationError):
        validate(broken, K8S_VERSION, strict=True)
    misspelt = copy.deepcopy(resource("Deployment", "mlflow"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(ValidationError):
        validate(misspelt, K8S_VERSION, strict=True)


def test_credentials_are_referenced_never_committed() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in k8s_resources()}
    assert not [name for kind, name in kinds if kind == "Secret"]


def test_kustomization_lists_the_long_running_stack() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # A RayJob starts a study when applied, so it stays out of `kubectl apply -k`.
    assert listed == on_disk - {"rayjob.yaml"}


def test_volume_mounts_name_a_volume_of_their_pod() -> None:
    for _, doc in k8s_resources():
        for label, template in pod_specs(doc):
            volumes = {v["name"] for v in template["spec"].get("volumes", [])}
            for container in template["spec"]["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{doc['kind']} {label}: {mount['name']}"


def test_containers_ask_only_for_resources_nodes_have() -> None:
    # An unknown extended resource leaves a pod Pending forever instead of failing validation.
    known = {"cpu", "memory", "ephemeral-storage", "nvidia.com/gpu"}
    for _, doc in k8s_resources():
        for container in containers(doc):
            for section in ("requests", "limits"):
                asked = set(container.get("resources", {}).get(section, {}))
                assert asked <= known, f"{container['name']} {section}: {sorted(asked - known)}"


# --- KubeRay ---------------------------------------------------------------------------------


def gpu_limit(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def test_raycluster_follows_kuberay_api() -> None:
    cluster = resource("RayCluster", "seqlab")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["rayVersion"])

    head = spec["headGroupSpec"]
    # KubeRay types rayStartParams as map[string]string: a bare YAML number is rejected.
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    (head_container,) = head["template"]["spec"]["containers"]
    assert gpu_limit(head_container) == 0, "the head is CPU-only"
    head_ports = {p["containerPort"] for p in head_container["ports"]}
    assert head_ports == {RAY_GCS_PORT, RAY_DASHBOARD_PORT, RAY_CLIENT_PORT}

    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups), "groupName must be unique"
    for group in groups:
        assert isinstance(group["groupName"], str) and group["groupName"]
        assert isinstance(group["minReplicas"], int) and isinstance(group["maxReplicas"], int)
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
        assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        assert group["template"]["spec"]["containers"]
    gpu_groups = [
        g for g in groups if any(gpu_limit(c) >= 1 for c in g["template"]["spec"]["containers"])
    ]
    assert gpu_groups, "one worker group must request nvidia.com/gpu"
    for group in gpu_groups:
        for container in group["template"]["spec"]["containers"]:
            requests = container["resources"].get("requests", {})
            # Kubernetes refuses an extended resource whose request differs from its limit.
            assert requests.get("nvidia.com/gpu", str(gpu_limit(container))) == str(
                gpu_limit(container)
            ), group["groupName"]
    assert all(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups), "GPU group autoscales"


def test_rayjob_runs_a_study_on_the_cluster() -> None:
    job = resource("RayJob", "seqlab-quickstart")
    cluster = resource("RayCluster", "seqlab")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    # KubeRay needs exactly one of the two: a cluster to create, or a running one to select.
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
    if "clusterSelector" in spec:
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        assert job["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode", "SidecarMode"}

    command = spec["entrypoint"].split()
    assert command[:2] == ["seqlab", "run"]
    # The image keeps the repository's experiments/ under its WORKDIR.
    workdir = [args for ins, args in dockerfile_instructions() if ins == "WORKDIR"][-1]
    spec_path = Path(command[2])
    assert spec_path.is_relative_to(workdir), f"{spec_path} is not inside the image's {workdir}"
    assert (ROOT / spec_path.relative_to(workdir)).is_file()


def test_ray_version_matches_the_image() -> None:
    args = dict(
        a.split("=", 1) for ins, a in dockerfile_instructions() if ins == "ARG" and "=" in a
    )
    assert resource("RayCluster", "seqlab")["spec"]["rayVersion"] == args["RAY_VERSION"]


def test_ray_token_auth_everywhere() -> None:
    cluster = resource("RayCluster", "seqlab")
    auth = cluster["spec"]["authOptions"]
    assert auth["mode"] == "token"
    # KubeRay reads the token from the key `auth_token` of this Secret.
    worker_env = env_of(
        resource("Deployment", "prefect-worker")["spec"]["template"]["spec"]["containers"][0]
    )
    assert worker_env["RAY_AUTH_MODE"]["value"] == "token"
    assert worker_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": auth["secretName"],
        "key": "auth_token",
    }
    anchors = compose()["x-seqlab-env"]
    assert anchors["RAY_AUTH_MODE"] == "token"
    assert anchors["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
    for name in ("ray-head", "ray-worker", "prefect-worker", "cli"):
        env = compose()["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
    # The variable is the one Ray 2.52+ reads (checked in the installed Ray, without importing it).
    setup = site_file("ray", "_private", "authentication", "authentication_token_setup.py")
    assert 'AUTH_MODE_ENV_VAR = "RAY_AUTH_MODE"' in setup.read_text()


# --- compose ---------------------------------------------------------------------------------


def interpolate(text: str, values: dict[str, str]) -> str:
    """Resolve ${VAR}, ${VAR:-default} and ${VAR:?message} the way compose does."""

    def value(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        found = values.get(name, "")
        return found if found or op != ":-" else rest

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", value, text)


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {key.strip(): value.strip() for key, value in pairs}


def run_check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    # A proxy that leads nowhere: a check that needed the network would fail here.
    env = os.environ | {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [*command, *map(str, files)], capture_output=True, text=True, env=env, timeout=60
    )


def test_compose_validates_against_compose_spec(tmp_path: Path) -> None:
    # As written, and after interpolation with filler values (compose validates both ways).
    filled = {key: value or "filler" for key, value in env_example().items()}
    resolved = tmp_path / "docker-compose.yml"
    resolved.write_text(interpolate(COMPOSE.read_text(), filled))
    assert "${" not in resolved.read_text()
    result = run_check_jsonschema(COMPOSE, resolved)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_spec_check_catches_mistakes(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["mlflow"]["restart_policy"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run_check_jsonschema(path)
    assert result.returncode != 0
    assert "restart_policy" in result.stdout + result.stderr


def test_compose_publishes_on_loopback_only() -> None:
    published: dict[int, str] = {}
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), f"{name}: use the short form HOST_IP:HOST:CONTAINER"
            host_ip, host_port, container_port = port.split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert host_port == container_port, f"{name}: {port}"
            published[int(container_port)] = name
    assert published == {
        MLFLOW_PORT: "mlflow",
        PREFECT_PORT: "prefect-server",
        RAY_GCS_PORT: "ray-head",
        RAY_DASHBOARD_PORT: "ray-head",
        RAY_CLIENT_PORT: "ray-head",
    }
    assert set(published) == PUBLISHED_PORTS
    assert "ports" not in compose()["services"]["postgres"]


def test_compose_ray_worker_reserves_the_gpus() -> None:
    services = compose()["services"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert flag(services["ray-worker"]["command"], "--address") == f"ray-head:{RAY_GCS_PORT}"
    assert "deploy" not in services["ray-head"], "the head is CPU-only"


def test_compose_shares_seqlab_home_at_one_path() -> None:
    services = compose()["services"]
    ray_nodes = ["ray-head", "ray-worker", "prefect-worker", "cli"]
    for name in ray_nodes:
        (mount,) = [v for v in services[name]["volumes"] if isinstance(v, dict)]
        home = services[name]["environment"]["SEQLAB_HOME"]
        assert mount["type"] == "bind"
        assert mount["source"] == mount["target"] == home, name


def test_env_example_lists_every_compose_variable() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    assert used == set(env_example())


# --- one image, one set of ports, one set of names ----------------------------------------


def test_one_image_everywhere() -> None:
    images = {value for _, d in k8s_resources() for _, key, value in walk(d) if key == "image"}
    services = compose()["services"]
    images |= {s["image"] for name, s in services.items() if name != "postgres"}
    images |= {v for _, key, v in walk(prefect_project()) if key == "image"}
    assert images == {IMAGE}
    assert services["postgres"]["image"].startswith("postgres:")
    # The build instructions in the Dockerfile tag the same name.
    assert f"-t {IMAGE}" in DOCKERFILE.read_text()


def test_ports_agree_across_files() -> None:
    config = resource("ConfigMap", "seqlab-config")["data"]
    services = compose()["services"]

    mlflow_args = resource("Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert int(flag(mlflow_args["args"], "--port")) == MLFLOW_PORT
    assert int(flag(services["mlflow"]["command"], "--port")) == MLFLOW_PORT
    assert resource("Service", "mlflow")["spec"]["ports"][0]["port"] == MLFLOW_PORT
    assert config["MLFLOW_TRACKING_URI"].endswith(f":{MLFLOW_PORT}")

    prefect = resource("Deployment", "prefect-server")["spec"]["template"]["spec"]["containers"][0]
    assert int(flag(prefect["args"], "--port")) == PREFECT_PORT
    assert int(flag(services["prefect-server"]["command"], "--port")) == PREFECT_PORT
    assert resource("Service", "prefect-server")["spec"]["ports"][0]["port"] == PREFECT_PORT
    assert config["PREFECT_API_URL"].endswith(f":{PREFECT_PORT}/api")
    assert services["cli"]["environment"]["PREFECT_API_URL"].endswith(f":{PREFECT_PORT}/api")

    head = services["ray-head"]["command"]
    assert int(flag(head, "--port")) == RAY_GCS_PORT
    assert int(flag(head, "--dashboard-port")) == RAY_DASHBOARD_PORT
    assert int(flag(head, "--ray-client-server-port")) == RAY_CLIENT_PORT
    client_addresses = [
        services["cli"]["environment"]["RAY_ADDRESS"],
        services["prefect-worker"]["environment"]["RAY_ADDRESS"],
        env_of(containers(resource("Deployment", "prefect-worker"))[0])["RAY_ADDRESS"]["value"],
        prefect_project()["definitions"]["work_pools"]["kubernetes"]["job_variables"]["env"][
            "RAY_ADDRESS"
        ],
    ]
    for address in client_addresses:
        assert address.startswith("ray://") and address.endswith(f":{RAY_CLIENT_PORT}"), address

    table = README.read_text()
    for example in (
        f"http://127.0.0.1:{MLFLOW_PORT}",
        f"127.0.0.1:{RAY_GCS_PORT}",
        f"http://127.0.0.1:{PREFECT_PORT}/api",
    ):
        assert example in table


def test_seqlab_home_is_shared_storage() -> None:
    claim = resource("PersistentVolumeClaim", SEQLAB_HOME_VOLUME)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    home = resource("ConfigMap", "seqlab-config")["data"]["SEQLAB_HOME"]
    mounted = []
    for _, doc in k8s_resources():
        for label, template in pod_specs(doc):
            claims = {
                v["name"]
                for v in template["spec"].get("volumes", [])
                if v.get("persistentVolumeClaim", {}).get("claimName") == SEQLAB_HOME_VOLUME
            }
            for container in template["spec"]["containers"]:
                for mount in container.get("volumeMounts", []):
                    if mount["name"] in claims:
                        assert mount["mountPath"] == home, f"{doc['kind']} {label}"
                        mounted.append(label)
    # Every Ray node and the Prefect worker, whose flows drive studies.
    ray_groups = [label for label, _ in pod_specs(resource("RayCluster", "seqlab"))]
    assert set(ray_groups) | {"prefect-worker"} <= set(mounted)
    assert f"ENV SEQLAB_HOME={home}" in DOCKERFILE.read_text()


# --- Prefect ---------------------------------------------------------------------------------


def test_prefect_deployments() -> None:
    project = prefect_project()
    deployments = {d["name"]: d for d in project["deployments"]}
    assert list(deployments) == list(DEPLOYMENTS)
    for name, (entrypoint, flow_name, parameters) in DEPLOYMENTS.items():
        deployment = deployments[name]
        assert deployment["entrypoint"] == entrypoint
        assert deployment["flow_name"] == flow_name
        assert set(deployment["parameters"]) == parameters, name
        assert deployment["work_pool"]["name"] == "seqlab"
        path, function = deployment["entrypoint"].split(":")
        assert re.fullmatch(r"[\w/]+\.py", path) and function.isidentifier()
        assert (ROOT / path).resolve().is_relative_to(ROOT), f"{path} leaves the repository"
    assert (ROOT / deployments["run-study"]["parameters"]["spec"]).is_file()
    # The pull step lands where the image keeps the code.
    workdir = [args for ins, args in dockerfile_instructions() if ins == "WORKDIR"][-1]
    (pull,) = project["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == workdir


def test_prefect_yaml_loads_as_prefect_reads_it() -> None:
    models = pytest.importorskip("prefect.cli.deploy._models")
    model = models.PrefectYamlModel.model_validate(prefect_project())
    assert [d.name for d in model.deployments] == list(DEPLOYMENTS)
    assert {d.work_pool.name for d in model.deployments} == {"seqlab"}


def test_prefect_entrypoints_exist_in_code() -> None:
    for entrypoint, _, _ in DEPLOYMENTS.values():
        assert (ROOT / entrypoint.split(":")[0]).is_file(), entrypoint
    module = ROOT / "pipelines" / "ops" / "deployments.py"
    tree = ast.parse(module.read_text())
    functions = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for entrypoint, flow_name, parameters in DEPLOYMENTS.values():
        function = entrypoint.split(":")[1]
        assert function in functions, f"{module.name} has no function {function}"
        node = functions[function]
        arguments = {a.arg for a in node.args.args + node.args.kwonlyargs}
        assert parameters <= arguments, f"{function}: {sorted(parameters - arguments)}"
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call):
                names = {k.arg: k.value for k in decorator.keywords}
                if "name" in names and isinstance(names["name"], ast.Constant):
                    assert names["name"].value == flow_name, function


def test_every_worker_polls_the_seqlab_pool() -> None:
    k8s_worker = containers(resource("Deployment", "prefect-worker"))[0]["args"]
    compose_worker = compose()["services"]["prefect-worker"]["command"]
    for command in (k8s_worker, compose_worker):
        assert command[:3] == ["prefect", "worker", "start"]
        assert flag(command, "--pool") == "seqlab"
        assert flag(command, "--type") == "process"


def test_prefect_auth_string_on_server_and_clients() -> None:
    server = env_of(containers(resource("Deployment", "prefect-server"))[0])
    reference = server["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    clients = [
        containers(resource("Deployment", "prefect-worker"))[0],
        containers(resource("RayCluster", "seqlab"))[0],  # the head runs RayJob drivers
    ]
    for client in clients:
        assert env_of(client)["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == reference
    services = compose()["services"]
    server_value = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server_value.startswith("${PREFECT_AUTH_STRING")
    assert compose()["x-seqlab-env"]["PREFECT_API_AUTH_STRING"] == server_value


def test_prefect_settings_exist() -> None:
    """Every PREFECT_* variable set here is one the installed Prefect knows."""
    import prefect.settings

    names = {key for _, d in k8s_resources() for c in containers(d) for key in env_of(c)}
    names |= {key for s in compose()["services"].values() for key in s.get("environment", {})}
    prefect_names = {n for n in names if n.startswith("PREFECT_")}
    assert "PREFECT_SERVER_API_AUTH_STRING" in prefect_names
    unknown = sorted(n for n in prefect_names if not hasattr(prefect.settings, n))
    assert not unknown, f"not Prefect settings: {unknown}"


# --- MLflow ----------------------------------------------------------------------------------


def option_names(call: ast.expr) -> set[str]:
    """The flags a `click.option("--a/--no-a", "-a", ...)` call declares."""
    if not isinstance(call, ast.Call):
        return set()
    strings = [a.value for a in call.args if isinstance(a, ast.Constant)]
    return {name for s in strings for name in str(s).split("/") if name.startswith("--")}


def mlflow_server_options() -> set[str]:
    """The options of `mlflow server`, read from the installed MLflow's source, not imported."""
    tree = ast.parse(site_file("mlflow", "cli", "__init__.py").read_text())
    (server,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "server"]
    # Options shared between commands live in mlflow.utils.cli_args as `NAME = click.option(...)`.
    shared_tree = ast.parse(site_file("mlflow", "utils", "cli_args.py").read_text())
    shared = {
        node.targets[0].id: option_names(node.value)
        for node in shared_tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    options: set[str] = set()
    for decorator in server.decorator_list:
        if isinstance(decorator, ast.Attribute) and decorator.attr in shared:
            options |= shared[decorator.attr]
        options |= option_names(decorator)
    return options


def test_mlflow_server_flags() -> None:
    k8s = containers(resource("Deployment", "mlflow"))[0]
    compose_command = compose()["services"]["mlflow"]["command"]
    options = mlflow_server_options()
    assert {"--allowed-hosts", "--app-name", "--artifacts-destination"} <= options
    for args in (k8s["args"], compose_command):
        assert args[:2] == ["mlflow", "server"]
        used = {a.split("=", 1)[0] for a in args[2:] if a.startswith("--")}
        assert used <= options, f"unknown mlflow server flags: {sorted(used - options)}"
        assert flag(args, "--app-name") == "basic-auth"
        assert "--serve-artifacts" in args
        hosts = flag(args, "--allowed-hosts").split(",")
        assert "*" not in hosts and "mlflow:*" in hosts and "127.0.0.1:*" in hosts
    assert flag(k8s["args"], "--artifacts-destination").startswith("s3://")
    env = env_of(k8s)
    assert env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["configMapKeyRef"]
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql://")
    compose_env = compose()["services"]["mlflow"]["environment"]
    assert compose_env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")


def test_mlflow_variables_exist() -> None:
    """Every MLFLOW_* variable the server is given is one the installed MLflow reads."""
    source = site_file("mlflow", "environment_variables.py").read_text()
    known = set(re.findall(r'Variable\(\s*"(MLFLOW_\w+)"', source))
    known.add("MLFLOW_BACKEND_STORE_URI")  # `mlflow server --backend-store-uri`'s envvar
    cli_source = site_file("mlflow", "cli", "__init__.py").read_text()
    assert 'envvar="MLFLOW_BACKEND_STORE_URI"' in cli_source
    given = set(env_of(containers(resource("Deployment", "mlflow"))[0]))
    given |= set(compose()["services"]["mlflow"]["environment"])
    used = {n for n in given if n.startswith("MLFLOW_")}
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in used
    assert used <= known, f"unknown: {sorted(used - known)}"


def test_mlflow_auth_config_is_one_file() -> None:
    configmap = resource("ConfigMap", "mlflow-auth")["data"]["basic_auth.ini"]
    assert configmap == AUTH_INI.read_text()
    parser = configparser.ConfigParser()
    parser.read_string(configmap)
    section = parser["mlflow"]
    assert "admin_password" not in section, "the admin password comes from a Secret"
    assert section["default_permission"] in {"READ", "NO_PERMISSIONS"}
    # The user store lives on the server's own volume in both profiles.
    database = Path(section["database_uri"].removeprefix("sqlite:///"))
    k8s = containers(resource("Deployment", "mlflow"))[0]
    mounts = {m["mountPath"] for m in k8s["volumeMounts"]}
    config_path = Path(env_of(k8s)["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    assert config_path.parent.as_posix() in mounts
    assert any(database.is_relative_to(m) for m in mounts)
    volumes = compose()["services"]["mlflow"]["volumes"]
    assert f"../mlflow/basic_auth.ini:{config_path}:ro" in volumes
    assert any(database.is_relative_to(v.split(":")[1]) for v in volumes)


# --- credentials -----------------------------------------------------------------------------


def test_no_literal_secrets_in_kubernetes() -> None:
    checked = 0
    for path, doc in k8s_resources():
        for container in containers(doc):
            for name, entry in env_of(container).items():
                if not SECRET_NAME.search(name):
                    continue
                checked += 1
                if "valueFrom" in entry:
                    assert "secretKeyRef" in entry["valueFrom"], f"{path.name}: {name}"
                else:
                    # Only a composition of Secret-backed variables, e.g. a database URL.
                    assert "$(POSTGRES_PASSWORD)" in entry["value"], f"{path.name}: {name}"
                    assert env_of(container)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
        for _, key, _value in walk(doc):
            if key in {"data", "stringData"} and doc["kind"] == "Secret":
                pytest.fail(f"{path.name} commits a Secret's data")
    assert checked >= 10, "the pattern no longer matches the credentials it should"


def test_no_literal_secrets_in_compose() -> None:
    checked = 0
    document = compose()
    environments = [document["x-seqlab-env"]]
    environments += [s.get("environment", {}) for s in document["services"].values()]
    for environment in environments:
        for name, value in environment.items():
            if SECRET_NAME.search(name):
                checked += 1
                assert re.search(r"\$\{\w+:\?", str(value)), f"{name} must be a required ${{VAR}}"
    assert checked >= 8
    secrets = {k: v for k, v in env_example().items() if SECRET_NAME.search(k)}
    assert secrets and all(v == "" for v in secrets.values()), "the example holds no secret"
    assert ".env" in (INFRA / "compose" / ".gitignore").read_text().split()


def test_no_literal_secrets_in_prefect_yaml() -> None:
    for path, key, _value in walk(prefect_project()):
        assert not SECRET_NAME.search(str(key)), f"{path}.{key} belongs in a Secret"


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_is_sane() -> None:
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)

    (base,) = by_name["FROM"]
    assert re.fullmatch(r"python:3\.1[0-3]-slim(-\w+)?", base), base

    runs = " ".join(by_name["RUN"])
    installs = r"pip install \"?\.(\[[a-z0-9,]+\])?\"?\s"  # the project, with or without extras
    assert re.search(installs, runs), "installs the project itself with pip"
    assert "rm -rf /var/lib/apt/lists/*" in runs
    user = by_name["USER"][-1]
    assert user not in {"root", "0"} and re.search(rf"useradd .*\b{user}\b", runs)
    # Nothing runs as root after the switch.
    last_user = max(i for i, (name, _) in enumerate(instructions) if name == "USER")
    assert not [n for n, _ in instructions[last_user:] if n in {"RUN", "COPY", "ADD"}]

    entrypoint = json.loads(by_name["ENTRYPOINT"][-1])
    assert entrypoint[0].startswith("/") and entrypoint[0].endswith("tini")
    assert json.loads(by_name["CMD"][-1])[0] == "seqlab"
    assert "ADD" not in by_name, "COPY, not ADD: nothing is fetched at build time"
    assert not [e for e in by_name.get("ENV", []) if SECRET_NAME.search(e)]

    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "infra/compose/.env"} <= set(ignored)


# --- the README ------------------------------------------------------------------------------


def test_every_path_the_readme_names_exists() -> None:
    text = README.read_text()
    for path in set(re.findall(r"(?<![\w/])infra/[\w./-]*\w", text)) - {"infra/compose/.env"}:
        assert (ROOT / path).exists(), f"the README names {path}, which does not exist"
