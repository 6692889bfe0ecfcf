"""Reading deploy/: manifests, the gateway config each one mounts, and the values around it.

A Kubernetes example is a folder of multi-document YAML files under deploy/kubernetes/; the
Docker example is deploy/docker/ (the image's config, compose.yaml) and the repository's
Dockerfile. The config a gateway container mounts is parsed with the gateway's own
`from_mapping`, with a fake value for every environment variable the container is given and
a temporary file for every secret, signing secret or token file, so it is validated exactly
as `serve` would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.config.schema import is_loopback
from gateway.core.webhooks import SECRET_PREFIX

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
DOCKER = DEPLOY / "docker"
KUBERNETES = DEPLOY / "kubernetes"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")

Doc = dict[str, Any]


def fake(name: str) -> str:
    """A stand-in value for an environment variable: distinct per name, long enough for a token."""
    return f"fake-{name}-0123456789abcdef"


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kubernetes_examples() -> list[Path]:
    return sorted(path for path in KUBERNETES.iterdir() if path.is_dir())


def kubernetes_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("*.yaml"))


# --- the Dockerfile --------------------------------------------------------------------------


Instruction = tuple[str, str]


def dockerfile_instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_stages() -> list[list[Instruction]]:
    """The build's stages, each from its FROM on; the last one is the image."""
    stages: list[list[Instruction]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def stage_name(stage: list[Instruction]) -> str | None:
    found = re.search(r"\s+AS\s+(\S+)$", stage[0][1], re.IGNORECASE)
    return found.group(1) if found else None


def dockerfile_values(instruction: str, stage: int = -1) -> list[str]:
    """The arguments of each `instruction` in a stage: by default the image's own (the last)."""
    return [args for name, args in dockerfile_stages()[stage] if name == instruction]


def option_of(command: str, option: str) -> str | None:
    """The value of `--option VALUE` (or `--option=VALUE`) in a shell command, if given."""
    found = re.search(rf"{re.escape(option)}[ =](\S+)", command)
    return found.group(1) if found else None


def image_user() -> tuple[int, int]:
    """(uid, gid) of the user the image runs as: its USER, made by groupadd and useradd."""
    (user,) = dockerfile_values("USER")
    runs = " ".join(dockerfile_values("RUN"))
    commands = [part.strip() for part in re.split(r"&&|;", runs)]
    (useradd,) = [c for c in commands if c.startswith("useradd") and c.endswith(f" {user}")]
    uid, group = option_of(useradd, "--uid"), option_of(useradd, "--gid")
    assert uid is not None, "useradd without --uid: the manifests need a fixed number"
    assert group is not None, "useradd without --gid: the group's number is left to chance"
    if not group.isdigit():
        (groupadd,) = [c for c in commands if c.startswith("groupadd") and c.endswith(f" {group}")]
        group = option_of(groupadd, "--gid") or ""
    return int(uid), int(group)


def image_command() -> list[str]:
    """The image's default arguments to `neu-gateway` (its CMD, exec form)."""
    (cmd,) = dockerfile_values("CMD")
    args: list[str] = json.loads(cmd)
    return args


def config_path_in(args: list[str]) -> str:
    for flag in ("-c", "--config"):
        if flag in args:
            return args[args.index(flag) + 1]
    raise AssertionError(f"no -c/--config in {args}")


# --- gateway configs -------------------------------------------------------------------------


def credential_env_names(document: Doc) -> set[str]:
    """Every environment variable the config reads a secret, a signing secret, a token or a
    Redis password from."""
    names = {app["secret_env"] for app in document["apps"].values() if app.get("secret_env")}
    names |= {
        callbacks[key]
        for callbacks in app_callbacks(document)
        for key in SIGNING_ENV_KEYS
        if callbacks.get(key)
    }
    names |= {
        caller["token_env"]
        for caller in (document.get("callers") or {}).values()
        if caller.get("token_env")
    }
    return names | set(redis_password_envs(document).values())


def redis_password_envs(document: Doc) -> dict[str, str]:
    """cache.sentinel's or cache.cluster's password settings that name a variable, by key
    (password_env, sentinel_password_env)."""
    cache = document.get("cache") or {}
    nodes = cache.get("sentinel") or cache.get("cluster") or {}
    return {key: nodes[key] for key in ("password_env", "sentinel_password_env") if nodes.get(key)}


# Where an app's callbacks section names its delivery signing secrets (current, previous).
SIGNING_FILE_KEYS = ("signing_secret_file", "signing_secret_previous_file")
SIGNING_ENV_KEYS = ("signing_secret_env", "signing_secret_previous_env")


def fake_signing_secret(name: str) -> str:
    """A stand-in signing secret: a valid `whsec_` one (the loader refuses anything else),
    distinct per name."""
    key = hashlib.sha256(name.encode()).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def app_callbacks(document: Doc) -> list[Doc]:
    """Each app's callbacks section (those that have one)."""
    return [app["callbacks"] for app in document["apps"].values() if app.get("callbacks")]


def signing_files(document: Doc) -> list[str]:
    """Every file the config reads a delivery signing secret from."""
    return [
        callbacks[key]
        for callbacks in app_callbacks(document)
        for key in SIGNING_FILE_KEYS
        if callbacks.get(key)
    ]


def credential_files(document: Doc) -> list[str]:
    """Every file the config reads a secret, a signing secret or a token from."""
    files = [app["secret_file"] for app in document["apps"].values() if app.get("secret_file")]
    return (
        files
        + signing_files(document)
        + [
            caller["token_file"]
            for caller in (document.get("callers") or {}).values()
            if caller.get("token_file")
        ]
    )


def with_stand_in_files(document: Doc, scratch: Path) -> Doc:
    """A copy of the config whose secret, signing secret and token files are files in
    `scratch`, each holding `fake(<the path the config names>)`, or for a signing secret
    `fake_signing_secret(<the path>)`."""
    document = json.loads(json.dumps(document))  # a deep copy to rewrite
    entries = [
        (entry, ("secret_file", "token_file"), fake)
        for entry in [*document["apps"].values(), *(document.get("callers") or {}).values()]
    ]
    entries += [
        (callbacks, SIGNING_FILE_KEYS, fake_signing_secret) for callbacks in app_callbacks(document)
    ]
    for index, (entry, keys, value) in enumerate(entries):
        for key in keys:
            if entry.get(key):
                stand_in = scratch / f"credential-{index}-{key}"
                stand_in.write_text(value(entry[key]) + "\n", encoding="utf-8")
                entry[key] = str(stand_in)
    return document


def load_config(document: Doc, environ: Mapping[str, str]) -> Config:
    """`from_mapping` with each secret or token file replaced by a temporary one."""
    with tempfile.TemporaryDirectory() as scratch:
        return from_mapping(with_stand_in_files(document, Path(scratch)), environ)


def admin_port(config: Config) -> int:
    """The port /healthz, /readyz and /metrics are served on."""
    return (config.admin.listen or config.listen).port


def admin_host(config: Config) -> str:
    return (config.admin.listen or config.listen).host


def outside_ports(config: Config) -> set[int]:
    """Ports of the listeners reachable from outside the pod or container (not loopback)."""
    listeners = [config.listen, config.admin.listen, config.callbacks.listen]
    return {
        listener.port
        for listener in listeners
        if listener is not None and not is_loopback(listener.host)
    }


def under(path: str, directory: str) -> bool:
    return PurePosixPath(directory) in PurePosixPath(path).parents


# --- Kubernetes ------------------------------------------------------------------------------


@dataclass
class KubeGateway:
    """One neu-gateway container in a Kubernetes example, and the config it mounts."""

    example: str
    docs: list[Doc]
    workload: Doc
    container: Doc
    document: Doc  # the mounted gateway.yaml, as written
    environ: dict[str, str]  # the container's environment, secrets faked
    from_secrets: set[str]  # names of the environment variables that come from a Secret

    @cached_property
    def config(self) -> Config:
        return load_config(self.document, self.environ)

    @property
    def id(self) -> str:
        return f"{self.example}/{self.workload['metadata']['name']}"

    @property
    def pod(self) -> Doc:
        spec: Doc = self.workload["spec"]["template"]["spec"]
        return spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.workload["spec"]["template"]["metadata"].get("labels", {})
        return labels

    def volume(self, name: str) -> Doc:
        (volume,) = [v for v in self.pod.get("volumes", []) if v["name"] == name]
        return volume

    def kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    @property
    def autoscalers(self) -> list[Doc]:
        """The HorizontalPodAutoscalers that scale this gateway's workload."""
        return [
            hpa
            for hpa in self.kind("HorizontalPodAutoscaler")
            if hpa["spec"]["scaleTargetRef"]["name"] == self.workload["metadata"]["name"]
            and hpa["spec"]["scaleTargetRef"]["kind"] == self.workload["kind"]
        ]

    @property
    def least_replicas(self) -> int:
        """The fewest replicas it runs: its autoscaler's minimum, else the workload's count."""
        if self.autoscalers:
            return int(self.autoscalers[0]["spec"].get("minReplicas", 1))
        return int(self.workload["spec"].get("replicas", 1))

    def security(self, container: Doc, key: str) -> Any:
        """A securityContext setting as it applies to `container`: its own, else the pod's."""
        own = container.get("securityContext", {})
        return own[key] if key in own else self.pod.get("securityContext", {}).get(key)


def example_docs(example: Path) -> list[Doc]:
    return [doc for path in sorted(example.glob("*.yaml")) for doc in documents(path)]


def containers(workload: Doc) -> list[Doc]:
    pod = workload["spec"]["template"]["spec"]
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def is_gateway(container: Doc) -> bool:
    """Runs the image's entrypoint (`neu-gateway`) to serve; a reloader overrides the command."""
    image = container["image"].rsplit("/", 1)[-1]
    args = container.get("args", image_command())
    return image.startswith("neu-gateway") and "command" not in container and args[0] == "serve"


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert found, f"no {kind} {name!r} in the example"
    return found[0]


def mounted_config(docs: list[Doc], workload: Doc, container: Doc) -> Doc:
    """The gateway.yaml the container reads: found through its volumeMount and ConfigMap."""
    path = config_path_in(container.get("args", image_command()))
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        if mount.get("subPath") and mount["mountPath"] == path:
            key = mount["subPath"]
        elif not mount.get("subPath") and under(path, mount["mountPath"]):
            key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
            items = {item["path"]: item["key"] for item in volume["configMap"].get("items", [])}
            key = items.get(key, key) if items else key
        else:
            continue
        configmap = named(docs, "ConfigMap", volume["configMap"]["name"])
        document: Doc = yaml.safe_load(configmap["data"][key])
        return document
    raise AssertionError(f"{container['name']}: nothing mounts a ConfigMap at {path}")


def container_environ(docs: list[Doc], container: Doc) -> tuple[dict[str, str], set[str]]:
    """The container's environment (secret values faked) and which names come from Secrets."""
    environ: dict[str, str] = {}
    from_secrets: set[str] = set()
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            secret = named(docs, "Secret", source["secretRef"]["name"])
            keys = {**secret.get("data", {}), **secret.get("stringData", {})}
            environ.update({prefix + key: fake(prefix + key) for key in keys})
            from_secrets.update(prefix + key for key in keys)
        if "configMapRef" in source:
            configmap = named(docs, "ConfigMap", source["configMapRef"]["name"])
            environ.update({prefix + k: str(v) for k, v in configmap.get("data", {}).items()})
    for entry in container.get("env", []):
        name, source = entry["name"], entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            environ[name] = fake(name)
            from_secrets.add(name)
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            environ[name] = str(named(docs, "ConfigMap", ref["name"])["data"][ref["key"]])
        else:
            environ[name] = str(entry.get("value", ""))
            from_secrets.discard(name)
    return environ, from_secrets


@cache
def kube_gateways() -> tuple[KubeGateway, ...]:
    found = []
    for example in kubernetes_examples():
        docs = example_docs(example)
        for workload in (doc for doc in docs if doc["kind"] in WORKLOAD_KINDS):
            for container in filter(is_gateway, containers(workload)):
                environ, from_secrets = container_environ(docs, container)
                document = mounted_config(docs, workload, container)
                found.append(
                    KubeGateway(
                        example.name, docs, workload, container, document, environ, from_secrets
                    )
                )
    return tuple(found)


def container_port(container: Doc, port: int | str) -> int:
    """A probe's or policy's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"{container['name']}: no container port named {port!r}"
    return int(found[0])


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def mount_for(container: Doc, path: str) -> Doc | None:
    """The volumeMount whose directory holds `path`, if any."""
    mounts = [m for m in container.get("volumeMounts", []) if under(path, m["mountPath"])]
    return max(mounts, key=lambda m: len(m["mountPath"]), default=None)


@dataclass(frozen=True)
class SecretCommand:
    """One `kubectl [-n NAMESPACE] create secret generic NAME --from-file=KEY=PATH
    --from-literal=KEY=...` in a README."""

    namespace: str | None
    name: str
    files: dict[str, str]  # key -> the local file it is made from
    literals: frozenset[str]

    @property
    def keys(self) -> set[str]:
        return set(self.files) | self.literals


def secret_commands(readme: str) -> list[SecretCommand]:
    """Every command in a README that creates (or, piped to `kubectl apply`, replaces) a generic
    Secret, in order."""
    found = []
    for command in re.sub(r"\\\n", " ", readme).splitlines():
        created = re.search(
            r"kubectl\s+(?:(?:-n|--namespace)[ =]([a-z0-9-]+)\s+)?"
            r"create secret generic ([a-z0-9.-]+)",
            command,
        )
        if created:
            files = dict(re.findall(r"--from-file=([A-Za-z0-9._-]+)=(\S+)", command))
            literals = frozenset(re.findall(r"--from-literal=([A-Za-z0-9._-]+)=", command))
            found.append(SecretCommand(created.group(1), created.group(2), files, literals))
    return found


# --- Redis behind Sentinel -------------------------------------------------------------------


@dataclass
class RedisPods:
    """A Kubernetes example's Redis StatefulSet, a sentinel beside each Redis, and the headless
    Service that names its pods (<pod>.<service>.<namespace>.svc.cluster.local)."""

    docs: list[Doc]
    service: Doc
    workload: Doc

    @property
    def names(self) -> list[str]:
        """Each pod's name through the Service, pod 0 first."""
        meta, spec = self.workload["metadata"], self.workload["spec"]
        domain = f"{self.service['metadata']['name']}.{meta['namespace']}.svc.cluster.local"
        return [f"{meta['name']}-{index}.{domain}" for index in range(spec.get("replicas", 1))]

    def listening_on(self, port: int) -> Doc:
        """The container that declares `port`."""
        (found,) = [
            c
            for c in containers(self.workload)
            if port in {p["containerPort"] for p in c.get("ports", [])}
        ]
        return found

    def environ(self, container: Doc) -> dict[str, str]:
        return container_environ(self.docs, container)[0]

    def scripts(self, container: Doc) -> dict[str, str]:
        """The files of the ConfigMap the container's command (`sh FILE`) runs from."""
        command = container["command"]
        assert command[0] == "sh", f"{container['name']}: not `sh FILE`"
        assert len(command) == 2, f"{container['name']}: not `sh FILE`"
        mount = mount_for(container, command[1])
        assert mount is not None, f"{command[1]} is on no volume of {container['name']}"
        volume = {v["name"]: v for v in self.workload["spec"]["template"]["spec"]["volumes"]}
        configmap = named(self.docs, "ConfigMap", volume[mount["name"]]["configMap"]["name"])
        files: dict[str, str] = configmap["data"]
        return files

    def script(self, container: Doc) -> str:
        """The script the container's command runs."""
        return self.scripts(container)[PurePosixPath(container["command"][1]).name]


def redis_pods(docs: list[Doc], service_name: str) -> RedisPods:
    """The StatefulSet whose pods the Service `service_name` names."""
    service = named(docs, "Service", service_name)
    (workload,) = [
        doc
        for doc in docs
        if doc["kind"] == "StatefulSet"
        and doc["spec"].get("serviceName") == service_name
        and selects(service["spec"]["selector"], doc["spec"]["template"]["metadata"]["labels"])
    ]
    return RedisPods(docs, service, workload)
