"""The deploy kit under examples/deploy/, checked offline: the Dockerfile parsed and linted (and its command run as
the image would run it), the Kubernetes manifests validated against the API schemas and against our own rules."""
from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from drum_compat.compat.running import DRUM_COMPAT, answers
from drum_compat.runtime.settings import SETTINGS_BY_KEY, resolve_settings
from drum_compat.shared.routes import PREDICTION_ROUTES
from drum_compat.shared.server_types import SERVER_TYPES
from tests.processes import READY_TIMEOUT, program

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "examples" / "deploy"
KUBERNETES_VERSION = "1.29"  # the oldest release still commonly run; the manifests must hold there too
MIN_STARTUP_BUDGET = 120  # seconds a model may take to load before liveness counts


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=open(DEPLOY / "Dockerfile", "rb"))
    return parser


def instructions(dockerfile: DockerfileParser, name: str) -> list[str]:
    return [item["value"] for item in dockerfile.structure if item["instruction"] == name]


def test_the_base_image_is_pinned(dockerfile):
    (base,) = instructions(dockerfile, "FROM")
    image, _, tag = base.partition(":")
    assert image == "python" and tag and tag != "latest" and tag.count(".") >= 2  # a patch release, not a moving tag


def test_the_server_never_runs_as_root_and_writes_only_under_tmp(dockerfile):
    users = instructions(dockerfile, "USER")
    assert users and users[-1].split(":")[0] not in ("0", "root")
    last_run = max(index for index, item in enumerate(dockerfile.structure) if item["instruction"] == "RUN")
    last_user = max(index for index, item in enumerate(dockerfile.structure) if item["instruction"] == "USER")
    assert last_user > last_run  # nothing runs as root after the switch, so no root-owned writes follow
    env = dockerfile.envs
    assert env["HOME"] == env["TMPDIR"] == "/tmp"


def test_every_copied_source_exists_and_installs_are_lean(dockerfile):
    for value in instructions(dockerfile, "COPY"):
        *sources, _ = value.split()
        for source in sources:
            if source.startswith("${"):
                source = dockerfile.args[source.strip("${}")]
            assert (ROOT / source).exists(), source
    assert not instructions(dockerfile, "ADD")  # COPY only: no remote URLs, no implicit unpacking
    assert dockerfile.envs["PIP_NO_CACHE_DIR"] == "1"
    assert any("requirements.txt" in run and "pip install -r" in run for run in instructions(dockerfile, "RUN"))


def test_the_command_is_exec_form_and_listens_where_exposed(dockerfile):
    command = json.loads(instructions(dockerfile, "CMD")[0])
    assert command == ["drum-compat", "server"]
    assert dockerfile.envs["ADDRESS"].rpartition(":")[2] == instructions(dockerfile, "EXPOSE")[0]


@pytest.mark.servers
def test_the_image_command_serves_the_model_as_configured_and_stops_on_sigterm(dockerfile):
    """The CMD with the image's environment (its code dir and address swapped for this machine's)."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith(("DRUM_", "MLOPS_RUNTIME_PARAM_"))}
    environ.update(dockerfile.envs, CODE_DIR=str(ROOT / dockerfile.args["MODEL_DIR"]))
    command = json.loads(instructions(dockerfile, "CMD")[0])

    def image(port: int) -> list[str]:
        environ["ADDRESS"] = f"127.0.0.1:{port}"
        return [DRUM_COMPAT, *command[1:]]

    with program(image, answers("/readyz"), env=environ) as server:
        assert httpx.get(f"http://127.0.0.1:{server.port}/info/").json()["drumServer"] == "flask"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=READY_TIMEOUT) == 0


def manifests() -> list[dict]:
    return [document for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for document in yaml.safe_load_all(path.read_text())]


@pytest.mark.parametrize("document", manifests(), ids=lambda document: f"{document['kind']}/{document['metadata']['name']}")
def test_each_manifest_is_valid_kubernetes(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def deployments() -> list[dict]:
    return [document for document in manifests() if document["kind"] == "Deployment"]


def test_two_deployments_one_per_arm_behind_one_service():
    arms = {}
    for deployment in deployments():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item["value"] for item in container["env"]}
        arms[env["DRUM_SERVER_TYPE"]] = deployment
    assert set(arms) == {"gunicorn", "fastapi"}
    (service,) = [document for document in manifests() if document["kind"] == "Service"]
    selector = service["spec"]["selector"].items()
    for deployment in arms.values():
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    images = {deployment["spec"]["template"]["spec"]["containers"][0]["image"] for deployment in arms.values()}
    assert len(images) == 1  # one image, the server type chosen by the environment


@pytest.mark.parametrize("deployment", deployments(), ids=lambda deployment: deployment["metadata"]["name"])
def test_probes_ports_and_shutdown_fit_the_server(deployment):
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    stack = SERVER_TYPES[env["DRUM_SERVER_TYPE"]].stack
    resolution = resolve_settings(stack, env)
    assert resolution.warnings == []  # every variable is one this stack reads, under its current name
    rules = {route.rule for route in PREDICTION_ROUTES}
    probes = {name: container[name]["httpGet"]["path"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"} and set(probes.values()) <= rules
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= MIN_STARTUP_BUDGET
    (port,) = container["ports"]
    assert port["containerPort"] == 8080  # the image's ADDRESS
    graceful = resolution.value("graceful_timeout")
    assert graceful != SETTINGS_BY_KEY["graceful_timeout"].default  # 299 s would outlive any sensible grace period
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + graceful + 5
    assert resolution.value("request_timeout") < graceful  # every request ends before the graceful timeout does
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}


def guide_block(marker: str) -> str:
    from tests.test_docs import GUIDE, blocks_after

    return blocks_after(GUIDE, f"guide-example: {marker}")[0]


def test_the_guides_way_to_the_cluster_names_what_the_kit_has():
    """Issue 28, item 14: the image built and pushed is the one the manifests run; what is applied, waited for and
    forwarded exists under those names."""
    commands = [line.split() for line in guide_block("kubernetes").splitlines()]
    build, push, apply, rollout, forward, _ = commands
    image = build[build.index("-t") + 1]
    assert push == ["docker", "push", image]
    assert {deployment["spec"]["template"]["spec"]["containers"][0]["image"] for deployment in deployments()} == {image}
    assert build[build.index("-f") + 1] == "examples/deploy/Dockerfile" and (ROOT / apply[-1]).is_dir()
    assert sorted(rollout[3:]) == sorted(f"deployment/{deployment['metadata']['name']}" for deployment in deployments())
    (service,) = [document for document in manifests() if document["kind"] == "Service"]
    assert forward[2] == f"service/{service['metadata']['name']}"
    assert int(forward[3].split(":")[1]) == service["spec"]["ports"][0]["port"]


@pytest.mark.parametrize("deployment", deployments(), ids=lambda deployment: deployment["metadata"]["name"])
def test_each_pod_says_where_prometheus_scrapes_it(deployment):
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (port,) = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port["containerPort"]),
                           "prometheus.io/path": "/metrics"}


@pytest.mark.servers
@pytest.mark.parametrize("stack", ["gunicorn", "fastapi"])
def test_the_guides_queries_compare_the_arms_by_what_metrics_say(stack):
    """Every series, label and route the guide's PromQL names is in each arm's /metrics, the arm in server_type."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.processes import serve

    queries = guide_block("promql")
    with serve(ROOT / "examples" / "models" / "regression", stack) as server:
        httpx.post(f"{server.base_url}/predictions/", content=b"sqft,bedrooms,age\n1,2,3\n",
                   headers={"Content-Type": "text/csv"}, timeout=30).raise_for_status()
        httpx.post(f"{server.base_url}/predictions/", content=b"nope", headers={"Content-Type": "text/csv"}, timeout=30)
        for probe in ("/livez", "/readyz", "/startupz", "/metrics"):
            httpx.get(f"{server.base_url}{probe}", timeout=30)
        samples = [sample for family in text_string_to_metric_families(httpx.get(f"{server.base_url}/metrics", timeout=30).text)
                   for sample in family.samples]
    names = {sample.name for sample in samples}
    assert set(re.findall(r"\b(drum_\w+)\b", queries)) <= names
    for name, _ in re.findall(r"\b(\w+)\s*(=~|!~|=)\s*\"", queries):
        assert any(name in sample.labels for sample in samples if sample.name in queries), name
    assert {sample.labels["server_type"] for sample in samples if "server_type" in sample.labels} == {stack}
    left_out = set(re.search(r'route!~"([^"]+)"', queries).group(1).split("|"))
    # "/": DRUM's ping, which the readiness check here used, counts as any client's request
    probes = {sample.labels["route"] for sample in samples if sample.name == "drum_requests_total"} - {"/predictions/", "/"}
    assert probes == left_out  # the routes left out are exactly the probes and scrapes, under their label values
    assert {sample.labels["status"] for sample in samples if sample.name == "drum_requests_total"
            and sample.labels["route"] == "/predictions/"} >= {"200"}
