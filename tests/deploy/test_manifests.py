"""deploy/ agrees with the gateway config it ships: ports, probe paths, environment names,
mounted secret files, grace periods; and every Kubernetes manifest is valid for the API.

The configs are parsed by the gateway's own config code (see manifests.py), so a renamed
variable, a moved port or a misspelt option fails here, not in a cluster. Kubernetes schemas
come from the kubernetes-validate package (no cluster needed); the examples use built-in
kinds only (metrics are scraped through pod annotations, not a ServiceMonitor, whose CRD
schema that package does not have).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from yarl import URL

from tests.deploy.manifests import (
    DEPLOY,
    DOCKER,
    ROOT,
    Doc,
    KubeGateway,
    RedisPods,
    admin_host,
    admin_port,
    config_path_in,
    container_port,
    containers,
    credential_env_names,
    credential_files,
    dockerfile_stages,
    dockerfile_values,
    documents,
    fake,
    image_command,
    image_user,
    is_gateway,
    kube_gateways,
    kubernetes_examples,
    kubernetes_files,
    load_config,
    mount_for,
    outside_ports,
    redis_password_envs,
    redis_pods,
    secret_commands,
    selects,
    stage_name,
    under,
)

KUBERNETES_VERSION = "1.32"
README = DEPLOY / "README.md"
HEALTHZ, READYZ, METRICS = "/healthz", "/readyz", "/metrics"

GATEWAYS = kube_gateways()


def each_gateway() -> Any:
    return pytest.mark.parametrize("gw", GATEWAYS, ids=[gw.id for gw in GATEWAYS])


def serves_other_pods(gw: KubeGateway) -> bool:
    return not gw.config.listen.is_loopback


# --- Kubernetes: the API schemas -----------------------------------------------------------


@pytest.mark.parametrize(
    "path", kubernetes_files(), ids=[str(p.relative_to(DEPLOY)) for p in kubernetes_files()]
)
def test_manifest_is_valid_for_the_kubernetes_api(path: Path) -> None:
    for doc in documents(path):
        # strict: an unknown or misplaced field is an error, not silently dropped
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_each_kubernetes_example_runs_a_gateway() -> None:
    assert {path.name for path in kubernetes_examples()} == {"sidecar", "shared"}
    assert {gw.example for gw in GATEWAYS} == {"sidecar", "shared"}


# --- Kubernetes: the gateway container against its mounted config ---------------------------


@each_gateway()
def test_mounted_config_is_valid_with_the_containers_environment(gw: KubeGateway) -> None:
    assert gw.config.apps  # from_mapping raises ConfigError naming any unset variable


@each_gateway()
def test_secrets_and_tokens_in_the_environment_come_from_secrets(gw: KubeGateway) -> None:
    names = credential_env_names(gw.document) | set(
        re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", json.dumps(gw.document))
    )
    assert names <= gw.from_secrets, f"not from a Secret: {sorted(names - gw.from_secrets)}"


@each_gateway()
def test_secret_and_token_files_are_mounted_from_secrets(gw: KubeGateway) -> None:
    for path in credential_files(gw.document):
        mount = mount_for(gw.container, path)
        assert mount is not None, f"{path} is under no volumeMount of {gw.container['name']}"
        assert "subPath" not in mount, f"{path}: a subPath mount never sees the Secret change"
        secret = gw.volume(mount["name"]).get("secret")
        assert secret is not None, f"{path} is not on a Secret volume"
        key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
        if "items" in secret:
            assert key in {item["path"] for item in secret["items"]}


@each_gateway()
def test_probes_are_healthz_and_readyz_on_the_admin_port(gw: KubeGateway) -> None:
    expected = {"livenessProbe": HEALTHZ, "readinessProbe": READYZ}
    for kind, path in expected.items():
        probe = gw.container[kind]["httpGet"]
        assert probe["path"] == path
        assert container_port(gw.container, probe["port"]) == admin_port(gw.config)
        assert probe.get("host") is None
        assert probe.get("scheme", "HTTP") == "HTTP"
    # the kubelet probes the pod's address, never its loopback
    assert admin_host(gw.config) in ("0.0.0.0", "::")


@each_gateway()
def test_container_ports_are_the_listeners_outside_loopback(gw: KubeGateway) -> None:
    declared = {int(port["containerPort"]) for port in gw.container.get("ports", [])}
    assert declared == outside_ports(gw.config)


@each_gateway()
def test_grace_period_outlasts_drain_and_timeout(gw: KubeGateway) -> None:
    grace = gw.pod.get("terminationGracePeriodSeconds", 30)
    assert grace > gw.config.shutdown.drain_s + gw.config.shutdown.timeout_s


@each_gateway()
def test_prometheus_scrapes_metrics_on_the_admin_port(gw: KubeGateway) -> None:
    annotations = gw.workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == admin_port(gw.config)
    assert annotations.get("prometheus.io/path", METRICS) == METRICS


@each_gateway()
def test_read_only_root_leaves_tmp_writable(gw: KubeGateway) -> None:
    if gw.container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"]: m for m in gw.container.get("volumeMounts", [])}
        assert "/tmp" in mounts  # the upload spool
        assert not mounts["/tmp"].get("readOnly")


@each_gateway()
def test_services_target_the_gateways_ports(gw: KubeGateway) -> None:
    for service in gw.kind("Service"):
        if selects(service["spec"].get("selector", {}), gw.labels):
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert container_port(gw.container, target) in outside_ports(gw.config)


@each_gateway()
def test_network_policy_admits_only_named_namespaces(gw: KubeGateway) -> None:
    if not serves_other_pods(gw):
        pytest.skip("the API is on loopback: nothing outside the pod reaches it")
    policies = [
        policy
        for policy in gw.kind("NetworkPolicy")
        if selects(policy["spec"]["podSelector"].get("matchLabels", {}), gw.labels)
    ]
    assert policies, "no NetworkPolicy selects the gateway's pods"
    admitted: set[int] = set()
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every source"
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                assert peer.get("namespaceSelector") or peer.get("podSelector")
            assert rule.get("ports"), "a rule without `ports` admits every port"
            admitted |= {container_port(gw.container, p["port"]) for p in rule["ports"]}
    assert gw.config.listen.port in admitted
    assert admitted <= outside_ports(gw.config)


@each_gateway()
def test_replicas_have_a_disruption_budget(gw: KubeGateway) -> None:
    if not serves_other_pods(gw):
        pytest.skip("a sidecar follows its app's budget")
    budgets = [
        pdb
        for pdb in gw.kind("PodDisruptionBudget")
        if selects(pdb["spec"]["selector"].get("matchLabels", {}), gw.labels)
    ]
    assert gw.least_replicas > 1
    assert len(budgets) == 1


@each_gateway()
def test_replicas_are_scaled_on_cpu_by_an_autoscaler(gw: KubeGateway) -> None:
    if not serves_other_pods(gw):
        pytest.skip("a sidecar scales with its app")
    (hpa,) = gw.autoscalers
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        gw.workload["apiVersion"],
        gw.workload["kind"],
        gw.workload["metadata"]["name"],
    )
    assert hpa["metadata"]["namespace"] == gw.workload["metadata"]["namespace"]
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilization is a share of the request: without one the HPA cannot compute it.
    assert gw.container["resources"]["requests"]["cpu"]
    # A count in the workload would be put back by every `kubectl apply`, fighting the HPA.
    assert "replicas" not in gw.workload["spec"]


@each_gateway()
def test_gateway_and_its_reloader_run_as_the_images_user_and_group(gw: KubeGateway) -> None:
    uid, gid = image_user()
    runs_the_image = [
        c
        for c in containers(gw.workload)
        if c["image"].rsplit("/", 1)[-1].startswith("neu-gateway")
    ]
    for container in runs_the_image:
        assert gw.security(container, "runAsUser") == uid, container["name"]
        assert gw.security(container, "runAsGroup") == gid, container["name"]
        assert gw.security(container, "runAsNonRoot") is not False
    # A Secret's files are owned by root and the pod's fsGroup: a mode without "others" bits
    # needs the gateway's group to be that fsGroup.
    for mount in gw.container.get("volumeMounts", []):
        secret = gw.volume(mount["name"]).get("secret")
        if secret is not None and not secret.get("defaultMode", 0o644) & 0o004:
            assert gw.pod["securityContext"].get("fsGroup") == gid


@each_gateway()
def test_cache_sentinel_names_the_examples_sentinels(gw: KubeGateway) -> None:
    target = gw.config.redis
    if target is None:
        pytest.skip("in-memory cache")
    assert target.form == "sentinel", "the example shows Redis behind Sentinel"
    nodes = [f"{host}:{port}" for host, port in target.nodes]
    (service_name,) = {host.split(".")[1] for host, _ in target.nodes}
    pods = redis_pods(gw.docs, service_name)
    # Names, not addresses: a recreated pod keeps its name. They must resolve while a pod is
    # not ready (a replica syncing, a sentinel just started).
    assert pods.service["spec"]["clusterIP"] == "None"
    assert pods.service["spec"].get("publishNotReadyAddresses") is True
    (sentinel_port,) = {port for _, port in target.nodes}
    sentinel = pods.listening_on(sentinel_port)
    assert nodes == [f"{name}:{sentinel_port}" for name in pods.names]
    assert len(nodes) >= 3
    (published,) = [p for p in pods.service["spec"]["ports"] if p["port"] == sentinel_port]
    assert container_port(sentinel, published.get("targetPort", sentinel_port)) == sentinel_port

    # The sentinels monitor the master under the name the gateway asks for, and know each other
    # and every pod's Redis by the same names.
    settings = pods.environ(sentinel)
    assert "sentinel monitor $MASTER_NAME " in pods.script(sentinel)
    assert target.master == settings["MASTER_NAME"]
    assert settings["SENTINEL_NODES"].split() == nodes
    # A majority: a failover needs as many sentinels to elect the one that runs it.
    assert int(settings["QUORUM"]) == len(nodes) // 2 + 1
    (redis,) = [c for c in containers(pods.workload) if c is not sentinel]
    assert redis["image"].startswith("redis:")
    assert sentinel["image"] == redis["image"]
    (redis_port,) = [p["containerPort"] for p in redis["ports"]]
    assert pods.environ(redis) == settings
    assert settings["REDIS_NODES"].split() == [f"{name}:{redis_port}" for name in pods.names]
    assert "redis-server" in pods.script(redis)

    # One password, from one Secret key: the gateway's, Redis's (requirepass, masterauth) and
    # the sentinels' (their own requirepass, auth-pass).
    def secret_of(container: Doc, variable: str) -> tuple[str, str]:
        (entry,) = [e for e in container.get("env", []) if e["name"] == variable]
        ref = entry["valueFrom"]["secretKeyRef"]
        return ref["name"], ref["key"]

    assert target.password is not None
    assert target.sentinel_password is not None
    secret = secret_of(redis, "REDISCLI_AUTH")
    assert secret_of(sentinel, "REDISCLI_AUTH") == secret
    for variable in redis_password_envs(gw.document).values():
        assert secret_of(gw.container, variable) == secret


def example_redis(gw: KubeGateway) -> RedisPods:
    """The Redis pods the gateway's cache.sentinel names (skips a gateway without Redis)."""
    if gw.config.redis is None:
        pytest.skip("in-memory cache")
    (service_name,) = {host.split(".")[1] for host, _ in gw.config.redis.nodes}
    return redis_pods(gw.docs, service_name)


@each_gateway()
def test_redis_pods_admit_the_gateway_and_each_other_only(gw: KubeGateway) -> None:
    pods = example_redis(gw)
    labels = pods.workload["spec"]["template"]["metadata"]["labels"]
    ports = {p["containerPort"] for c in containers(pods.workload) for p in c["ports"]}

    def port_number(port: int | str) -> int:
        (number,) = {
            container_port(c, port)
            for c in containers(pods.workload)
            if isinstance(port, int) or port in {p.get("name") for p in c["ports"]}
        }
        return number

    admitted: dict[int, set[str]] = {port: set() for port in ports}
    policies = [
        policy
        for policy in gw.kind("NetworkPolicy")
        if selects(policy["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]
    assert policies, "no NetworkPolicy selects the Redis pods"
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every source"
            assert rule.get("ports"), "a rule without `ports` admits every port"
            sources = set()
            for peer in rule["from"]:
                # a podSelector alone: pods of this namespace
                assert set(peer) == {"podSelector"}, peer
                selector = peer["podSelector"]["matchLabels"]
                assert selects(selector, gw.labels) or selects(selector, labels), selector
                sources |= {"gateway"} if selects(selector, gw.labels) else set()
                sources |= {"redis"} if selects(selector, labels) else set()
            for port in rule["ports"]:
                admitted[port_number(port["port"])] |= sources
    # Redis: the gateway, and replication; the sentinels: the gateway, and each other.
    assert admitted == {port: {"gateway", "redis"} for port in ports}


@each_gateway()
def test_redis_pods_run_locked_down_with_probes_and_a_budget(gw: KubeGateway) -> None:
    pods = example_redis(gw)
    pod = pods.workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("automountServiceAccountToken") is False
    for container in containers(pods.workload):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert container["readinessProbe"], container["name"]
        assert container["livenessProbe"], container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]
    labels = pods.workload["spec"]["template"]["metadata"]["labels"]
    (budget,) = [
        pdb
        for pdb in gw.kind("PodDisruptionBudget")
        if selects(pdb["spec"]["selector"].get("matchLabels", {}), labels)
    ]
    # one pod away at a time: two sentinels of three still elect
    assert budget["spec"]["maxUnavailable"] == 1
    # the append-only file (the outbox survives a restart), on the pod's own volume
    (claim,) = pods.workload["spec"]["volumeClaimTemplates"]
    (redis,) = [
        c
        for c in containers(pods.workload)
        if claim["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    ]
    (mount,) = [m for m in redis["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    script = pods.script(redis)
    assert "appendonly yes" in script
    assert f"dir ${{DATA_DIR:-{mount['mountPath']}}}" in script


@each_gateway()
def test_ingress_reaches_only_the_callbacks_listener(gw: KubeGateway) -> None:
    ingresses = gw.kind("Ingress")
    if gw.config.callbacks.listen is None:
        assert not ingresses
        pytest.skip("no callbacks listener")
    assert ingresses, "the platform must reach the callbacks listener over public HTTPS"
    services = {s["metadata"]["name"]: s for s in gw.kind("Service")}
    for ingress in ingresses:
        assert ingress["spec"]["tls"]
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["path"].startswith("/callbacks/")
                backend = path["backend"]["service"]
                service = services[backend["name"]]
                (port,) = [
                    p
                    for p in service["spec"]["ports"]
                    if p.get("name") == backend["port"].get("name")
                    or p["port"] == backend["port"].get("number")
                ]
                target = container_port(gw.container, port.get("targetPort", port["port"]))
                assert target == gw.config.callbacks.listen.port


@each_gateway()
def test_reloader_can_signal_the_gateway(gw: KubeGateway) -> None:
    if gw.config.pid_file is None:
        pytest.skip("no pid_file: reloaded by a rollout")
    pid_file = str(gw.config.pid_file)
    others = [c for c in containers(gw.workload) if not is_gateway(c)]
    (reloader,) = [c for c in others if "neu-gateway reload" in " ".join(c.get("args", []))]
    script = " ".join(reloader["args"])
    assert f"-c {config_path_in(gw.container.get('args', image_command()))}" in script
    # it sees the pid file the gateway writes, on the same (writable to the gateway) volume
    gateway_mount, reloader_mount = mount_for(gw.container, pid_file), mount_for(reloader, pid_file)
    assert gateway_mount is not None
    assert reloader_mount is not None
    assert gateway_mount["name"] == reloader_mount["name"]
    assert not gateway_mount.get("readOnly")
    assert "emptyDir" in gw.volume(gateway_mount["name"])
    # it watches every mounted ConfigMap and Secret the gateway reads, as the gateway sees it
    for mount in gw.container.get("volumeMounts", []):
        volume = gw.volume(mount["name"])
        if "configMap" in volume or "secret" in volume:
            assert mount in reloader.get("volumeMounts", [])
            assert f"{mount['mountPath']}/..data" in script
    # and it may signal the gateway: one process namespace, the same user
    assert gw.pod.get("shareProcessNamespace") is True

    def user(container: Doc) -> Any:
        return container.get("securityContext", {}).get(
            "runAsUser", gw.pod.get("securityContext", {}).get("runAsUser")
        )

    assert user(reloader) == user(gw.container) is not None
    others_users = {user(c) for c in others if c is not reloader}
    assert user(gw.container) not in others_users


def secret_keys_used(gw: KubeGateway) -> dict[tuple[str, str], set[str]]:
    """(namespace, Secret) -> the keys the example's workloads read from it: as environment
    variables, and as the files the gateway's config names."""
    namespace = gw.workload["metadata"]["namespace"]
    wanted: dict[tuple[str, str], set[str]] = {}
    for workload in (d for d in gw.docs if d["kind"] in ("Deployment", "StatefulSet")):
        for container in containers(workload):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.setdefault((workload["metadata"]["namespace"], ref["name"]), set()).add(
                        ref["key"]
                    )
    for path in credential_files(gw.document):
        secret, key = secret_key_of(gw, path)
        wanted.setdefault((namespace, secret), set()).add(key)
    return wanted


def secret_key_of(gw: KubeGateway, path: str) -> tuple[str, str]:
    """The Secret, and its key, that a file the gateway reads is mounted from."""
    mount = mount_for(gw.container, path)
    assert mount is not None
    secret = gw.volume(mount["name"])["secret"]
    return secret["secretName"], str(PurePosixPath(path).relative_to(mount["mountPath"]))


@each_gateway()
def test_readme_creates_every_secret_key_the_manifests_use(gw: KubeGateway) -> None:
    """Each command that creates or replaces a Secret the example reads, the rotation's too,
    holds every key: one replaced without a key would take that file away from the pods."""
    commands = secret_commands(README.read_text(encoding="utf-8"))
    for (namespace, name), keys in secret_keys_used(gw).items():
        creating = [c for c in commands if (c.namespace, c.name) == (namespace, name)]
        assert creating, f"deploy/README.md never creates the Secret {namespace}/{name}"
        for command in creating:
            missing = keys - command.keys
            assert not missing, f"deploy/README.md makes {namespace}/{name} without {missing}"


@each_gateway()
def test_readme_gives_each_receiving_service_its_signing_secret(gw: KubeGateway) -> None:
    """The service at an app's deliver_to verifies deliveries with the secret the gateway signs
    them with: the README puts the same file in a Secret of the service's own namespace."""
    commands = secret_commands(README.read_text(encoding="utf-8"))
    namespace = gw.workload["metadata"]["namespace"]
    signing = {
        name: app["callbacks"]
        for name, app in gw.document["apps"].items()
        if (app.get("callbacks") or {}).get("signing_secret_file")
    }
    if not signing:
        pytest.skip("no app signs deliveries")
    for app, callbacks in signing.items():
        secret, key = secret_key_of(gw, callbacks["signing_secret_file"])
        (created, *_) = [c for c in commands if (c.namespace, c.name) == (namespace, secret)]
        source = created.files[key]
        # <service>.<namespace>.svc.cluster.local: a service of another namespace
        host = URL(callbacks["deliver_to"]).host or ""
        assert host.endswith(".svc.cluster.local"), f"{app}: deliver_to {host} is not a Service"
        receiver = host.split(".")[1]
        assert receiver != namespace
        given = [c for c in commands if c.namespace == receiver and source in c.files.values()]
        assert given, f"deploy/README.md gives namespace {receiver} no Secret from {source}"


# --- Docker: the image ---------------------------------------------------------------------


def image_document() -> Doc:
    document: Doc = yaml.safe_load((DOCKER / "gateway.yaml").read_text(encoding="utf-8"))
    return document


def image_config() -> Any:
    document = image_document()
    return load_config(document, {name: fake(name) for name in credential_env_names(document)})


def base_image() -> str:
    (base,) = dockerfile_values("FROM")
    return base


def test_base_image_is_one_exact_python_release() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base_image())
    # The wheel is built on the interpreter it is installed on.
    for stage in dockerfile_stages():
        assert stage[0][1].split()[0] == base_image()


def test_requirements_pin_exactly_the_runtime_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = (DOCKER / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    pinned = {canonicalize_name(pin.name): pin for pin in pins}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{pin} is not an exact pin"
    for dependency in map(Requirement, project["dependencies"]):
        pin = pinned.get(canonicalize_name(dependency.name))
        assert pin is not None, f"{dependency.name} is not pinned"
        (spec,) = pin.specifier
        assert dependency.specifier.contains(spec.version), f"{pin} is outside {dependency}"
    test_only = {
        canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]
    }
    assert not test_only & set(pinned), "test tools do not belong in the image"


def test_dockerfile_installs_the_pins_and_nothing_else() -> None:
    runs = " ".join(dockerfile_values("RUN"))
    copies = dockerfile_values("COPY")
    assert "deploy/docker/requirements.txt /tmp/requirements.txt" in copies
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in runs
    assert re.search(r"pip install --no-cache-dir --no-deps \S+\.whl", runs)
    # the wheel's build resolves nothing either
    (build,) = [stage for stage in dockerfile_stages()[:-1] if stage_name(stage)]
    assert "--no-deps --no-build-isolation" in " ".join(a for i, a in build if i == "RUN")


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY's flags, sources and destination."""
    words = args.split()
    flags = dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))
    paths = [word for word in words if not word.startswith("--")]
    return flags, paths[:-1], paths[-1]


def test_image_holds_no_source_tree() -> None:
    """The source is copied into a build stage only; the image gets the built wheel, installed
    and removed, so `python -m gateway` in its working directory imports the installed
    package, not a copy of the tree."""
    stages = {stage_name(stage): stage for stage in dockerfile_stages()[:-1]}
    for args in dockerfile_values("COPY"):
        flags, sources, destination = copy_parts(args)
        if "from" in flags:
            (source,) = sources
            build = " ".join(a for i, a in stages[flags["from"]] if i == "RUN")
            assert "pip wheel" in build
            assert f"--wheel-dir {source}" in build
            assert destination.startswith("/tmp/")
            assert f"rm -rf {destination}" in " ".join(dockerfile_values("RUN"))
        else:
            for source in sources:
                assert source.startswith("deploy/docker/"), f"{source} copied into the image"
    (workdir,) = dockerfile_values("WORKDIR")
    destinations = [copy_parts(args)[2] for args in dockerfile_values("COPY")]
    assert not any(under(d, workdir) or d == workdir for d in destinations)
    assert workdir not in {args for stage in stages.values() for i, args in stage if i == "WORKDIR"}


def test_image_user_has_a_group_of_its_own_number() -> None:
    runs = " ".join(dockerfile_values("RUN"))
    assert "groupadd --system --gid 10001 neu" in runs
    assert image_user() == (10001, 10001)


def test_image_ships_the_docker_config_where_its_command_reads_it() -> None:
    assert f"deploy/docker/gateway.yaml {config_path_in(image_command())}" in dockerfile_values(
        "COPY"
    )
    assert dockerfile_values("ENTRYPOINT") == ['["neu-gateway"]']


def test_image_config_listens_outside_with_callers() -> None:
    config = image_config()
    assert not config.listen.is_loopback
    assert config.callers


def test_healthcheck_probes_readyz_on_the_configured_port() -> None:
    (healthcheck,) = dockerfile_values("HEALTHCHECK")
    (url,) = re.findall(r"https?://[^'\"\s]+", healthcheck)
    target = URL(url)
    config = image_config()
    assert target.path == READYZ
    assert target.port == admin_port(config)
    assert target.host in ("127.0.0.1", "localhost")
    assert admin_host(config) in ("0.0.0.0", "127.0.0.1")


def test_exposed_ports_are_the_listeners() -> None:
    exposed = {
        int(port.split("/")[0]) for args in dockerfile_values("EXPOSE") for port in args.split()
    }
    assert exposed == outside_ports(image_config())


def documented_runs() -> list[Any]:
    """Each `podman run` or `docker run` of the image's gateway shown in a shell block of
    deploy/README.md or docs/deploying.md (not those that run another command)."""
    found = []
    for path in (README, ROOT / "docs" / "deploying.md"):
        text = path.read_text(encoding="utf-8")
        for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                if re.match(r"(podman|docker) run ", line) and "--entrypoint" not in line:
                    found.append(pytest.param(line, id=f"{path.name}: {line[:40]}"))
    return found


@pytest.mark.parametrize("command", documented_runs())
def test_documented_run_gives_every_secret_the_config_reads(command: str) -> None:
    """The image's config refuses to start without one of its secret files or variables."""
    mounted = set(re.findall(r"-v \S+?:(/\S+?)(?::ro)?(?=\s)", command))
    given = set(re.findall(r"-e ([A-Za-z_][A-Za-z0-9_]*)=", command))
    assert set(credential_files(image_document())) <= mounted
    assert credential_env_names(image_document()) <= given


# --- Docker: compose -----------------------------------------------------------------------


def compose() -> Doc:
    document: Doc = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return document


def dotenv_names() -> set[str]:
    lines = (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"[A-Z_][A-Z0-9_]*=", line)}


def interpolate(value: Any, required: set[str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?message}, with a fake value for each VAR the
    .env file must set (those go into `required`)."""

    def replace(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if operator == ":-":
            return rest
        required.add(name)
        return fake(name)

    pattern = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}"
    return re.sub(pattern, replace, str(value)).replace("$$", "$")


def service_environ(service: Doc, required: set[str]) -> dict[str, str]:
    entries = service.get("environment", {})
    if isinstance(entries, list):
        entries = dict(entry.split("=", 1) for entry in entries)
    return {name: interpolate(value, required) for name, value in entries.items()}


def gateway_service() -> Doc:
    (service,) = [s for s in compose()["services"].values() if "build" in s]
    return service


def compose_config() -> Any:
    return load_config(image_document(), service_environ(gateway_service(), set()))


def test_compose_builds_the_repository_image() -> None:
    build = gateway_service()["build"]
    assert (DOCKER / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


def test_compose_mounts_the_image_config_at_the_commands_path() -> None:
    volumes = [v.split(":") for v in gateway_service().get("volumes", [])]
    configs = [v for v in volumes if v[1] == config_path_in(image_command())]
    assert len(configs) == 1
    assert (DOCKER / configs[0][0]).resolve() == DOCKER / "gateway.yaml"


def test_compose_gives_every_secret_from_the_env_file() -> None:
    required: set[str] = set()
    environ = service_environ(gateway_service(), required)
    load_config(image_document(), environ)  # every variable the config needs is set
    for name in credential_env_names(image_document()):
        value = gateway_service()["environment"][name]
        assert re.fullmatch(r"\$\{[A-Z_0-9]+:\?[^}]*\}", value), f"{name} is not from .env"
    for service in compose()["services"].values():
        service_environ(service, required)
        interpolate(yaml.safe_dump(service.get("command", "")), required)
    assert required == dotenv_names()


def secret_files(service: Doc) -> dict[str, str]:
    """The files a compose service's `secrets:` mounts (/run/secrets/TARGET), each with the
    host file it is."""
    declared = compose().get("secrets", {})
    files = {}
    for entry in service.get("secrets", []):
        source = entry if isinstance(entry, str) else entry["source"]
        target = source if isinstance(entry, str) else entry.get("target", source)
        assert "file" in declared[source]
        files[str(PurePosixPath("/run/secrets") / target)] = declared[source]["file"]
    return files


def test_compose_mounts_every_secret_file() -> None:
    targets = secret_files(gateway_service())
    for path in credential_files(image_document()):
        assert path in targets, f"{path} is not a compose secret of the gateway"


def test_compose_publishes_the_listeners() -> None:
    published = set()
    for port in gateway_service()["ports"]:
        target = port["target"] if isinstance(port, dict) else str(port).split(":")[-1]
        published.add(int(str(target).split("/")[0]))
    assert published == outside_ports(compose_config())


def test_compose_waits_out_drain_and_timeout_on_stop() -> None:
    config = compose_config()
    grace = gateway_service().get("stop_grace_period", "10s")
    seconds = sum(
        int(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
        for amount, unit in re.findall(r"(\d+)([hms])", grace)
    )
    assert seconds > config.shutdown.drain_s + config.shutdown.timeout_s
    assert not gateway_service().get("healthcheck", {}).get("disable")


def test_compose_redis_is_the_caches_redis() -> None:
    config = compose_config()
    assert config.cache.backend == "redis"
    assert config.callbacks.store == "redis"
    url = URL(config.cache.url or "")
    redis = compose()["services"][url.host]
    assert redis["image"].startswith("redis:")
    assert url.port == 6379
    command = [interpolate(part, set()) for part in redis["command"]]
    assert command[command.index("--requirepass") + 1] == url.password
    assert command[command.index("--appendonly") + 1] == "yes"  # the outbox survives restarts


def test_compose_delivers_callbacks_to_a_service_of_its_own() -> None:
    config = compose_config()
    services = compose()["services"]
    for app in config.apps.values():
        target = URL(app.callbacks.deliver_to or "")
        assert target.host in services
        stand_in = yaml.safe_dump(services[target.host]["command"])
        assert f"{target.port})" in stand_in
        assert services[target.host]["image"] == base_image()


def test_compose_stand_in_verifies_with_the_secret_the_gateway_signs_with() -> None:
    config, services = compose_config(), compose()["services"]
    for name, app in image_document()["apps"].items():
        path = (app.get("callbacks") or {}).get("signing_secret_file")
        assert path, f"apps.{name}: deliveries unsigned"
        stand_in = services[URL(config.apps[name].callbacks.deliver_to or "").host]
        assert f'SECRET_FILE = "{path}"' in stand_in["command"][2]
        # the same host file, mounted where the stand-in reads it
        assert secret_files(stand_in).get(path) == secret_files(gateway_service())[path]
