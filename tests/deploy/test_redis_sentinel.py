"""The shared example's Redis behind Sentinel does what redis.yaml says: its own scripts, run
with its pods' environment on loopback (three Redis, three sentinels; `localhost` stands for the
pods' names), and a gateway store made from the ConfigMap's cache.sentinel.

- the set's first start makes pod 0 the master and the others its replicas, and the sentinels
  agree, knowing every Redis and each other by name;
- the master's preStop hands the role to a replica before the pod stops, and the pod comes
  back as a replica of the new master, its sentinel watching that master, not pod 0;
- a master lost without warning is failed over by the two sentinels left, and its pod comes
  back the same way;
- the gateway's writes, each waiting for a replica, follow the master through both.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.upstream.stores import RedisStore, StoreError
from tests.deploy.manifests import (
    Doc,
    KubeGateway,
    RedisPods,
    containers,
    kube_gateways,
    load_config,
    redis_password_envs,
    redis_pods,
)
from tests.support.ports import free_port
from tests.support.waiting import until_answers

pytestmark = [pytest.mark.e2e, pytest.mark.long]

# The scripts must write it into Redis's and Sentinel's config files verbatim.
PASSWORD = 'pass "word" \\ with spaces'
# A name, as the pods' are: the sentinels resolve it and announce it, never an address.
HOST = "localhost"
# The manifest's 5 s suits a cluster's hiccups; a test wants the failover sooner.
DOWN_AFTER_MS = "2000"
SETTLE_S = 30  # a first start, a failover, a rejoin: each well within it


def shared_gateway() -> KubeGateway:
    (gw,) = [gw for gw in kube_gateways() if gw.example == "shared"]
    return gw


def example_pods() -> RedisPods:
    gw = shared_gateway()
    assert gw.config.redis is not None
    (service_name,) = {host.split(".")[1] for host, _ in gw.config.redis.nodes}
    return redis_pods(gw.docs, service_name)


def script_name(command: list[str]) -> str:
    return PurePosixPath(command[-1]).name


class Container:
    """One container of a pod: the script its manifest runs, with the pod's environment."""

    def __init__(self, script: Path, environ: dict[str, str]) -> None:
        self.script = script
        self.environ = environ
        self.output = ""
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert self._process is None
        self.output = ""
        # Loopback only (a pod's own address in a cluster); ::1 too, should localhost be it.
        self._process = await asyncio.create_subprocess_exec(
            "sh",
            str(self.script),
            "--bind",
            "127.0.0.1",
            "-::1",
            env=self.environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.ensure_future(self._read(self._process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            self.output += line.decode(errors="replace")

    async def stop(self, how: int = signal.SIGTERM) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(how)
        async with asyncio.timeout(20):
            await process.wait()
            if self._reader is not None:
                await self._reader


class Pod:
    """Pod N of the StatefulSet: its Redis, its sentinel, and its Redis's preStop."""

    def __init__(self, pods: RedisPods, scripts: Path, environ: dict[str, str], root: Path) -> None:
        self.environ = environ
        sentinel, redis = role_containers(pods)
        for volume in ("data", "redis", "sentinel"):
            (root / volume).mkdir(parents=True)
        # The claim, and the two memory volumes the configs are written to.
        environ = environ | {"DATA_DIR": str(root / "data")}
        self.redis = Container(
            scripts / script_name(redis["command"]), environ | {"CONF_DIR": str(root / "redis")}
        )
        self.sentinel = Container(
            scripts / script_name(sentinel["command"]),
            environ | {"CONF_DIR": str(root / "sentinel")},
        )
        self.pre_stop_script = scripts / script_name(
            redis["lifecycle"]["preStop"]["exec"]["command"]
        )

    async def start(self) -> None:
        await self.redis.start()
        await self.sentinel.start()

    async def stop(self, how: int = signal.SIGTERM) -> None:
        await self.sentinel.stop(how)
        await self.redis.stop(how)

    async def pre_stop(self) -> tuple[int, str]:
        """Runs the preStop hook as the kubelet would before stopping the pod."""
        process = await asyncio.create_subprocess_exec(
            "sh",
            str(self.pre_stop_script),
            env=self.redis.environ,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(40):
            out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace")


def role_containers(pods: RedisPods) -> tuple[Doc, Doc]:
    """(the sentinel, the Redis) of the example's pods."""
    target = shared_gateway().config.redis
    assert target is not None
    sentinel = pods.listening_on(target.nodes[0][1])
    (redis,) = [c for c in containers(pods.workload) if c is not sentinel]
    return sentinel, redis


async def ask(port: int, *command: Any) -> Any:
    """One command to the Redis or sentinel on `port`; None if it does not answer."""
    client = Redis(
        host="127.0.0.1",
        port=port,
        password=PASSWORD,
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=2,
        # redis-py's default retries a refused connection for seconds; a pod that is down is
        # an answer here
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return await client.execute_command(*command)
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()


def addresses(entries: list[dict[str, Any]]) -> list[str]:
    """host:port of each instance a sentinel lists (SENTINEL REPLICAS, SENTINEL SENTINELS;
    redis-py makes each a dict)."""
    return sorted(f"{entry['ip']}:{entry['port']}" for entry in entries)


class LocalSet:
    """The example's three pods on loopback, each container started by its manifest's script."""

    def __init__(self, root: Path) -> None:
        pods = example_pods()
        sentinel, _ = role_containers(pods)
        settings = pods.environ(sentinel)
        self.master_name = settings["MASTER_NAME"]
        count = len(pods.names)
        self.redis_ports = [free_port() for _ in range(count)]
        self.sentinel_ports = [free_port() for _ in range(count)]
        scripts = root / "scripts"
        scripts.mkdir()
        for name, text in pods.scripts(sentinel).items():
            (scripts / name).write_text(text, encoding="utf-8")
        settings |= {
            "REDIS_NODES": " ".join(f"{HOST}:{port}" for port in self.redis_ports),
            "SENTINEL_NODES": " ".join(f"{HOST}:{port}" for port in self.sentinel_ports),
            "DOWN_AFTER_MS": DOWN_AFTER_MS,
        }
        name = pods.workload["metadata"]["name"]
        base = {"PATH": os.environ["PATH"], **settings, "REDISCLI_AUTH": PASSWORD}
        self.pods = [
            Pod(pods, scripts, base | {"POD_NAME": f"{name}-{index}"}, root / f"pod-{index}")
            for index in range(count)
        ]

    def address(self, index: int) -> str:
        """Pod `index`'s Redis as the sentinels name it."""
        return f"{HOST}:{self.redis_ports[index]}"

    async def named_master(self, index: int) -> str | None:
        """The master as pod `index`'s sentinel names it."""
        answer = await ask(
            self.sentinel_ports[index], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return f"{answer[0]}:{answer[1]}" if answer else None

    async def master_index(self) -> int | None:
        """The pod every sentinel that answers names as the master, if they agree."""
        named = {await self.named_master(index) for index in range(len(self.pods))} - {None}
        if len(named) != 1:
            return None
        (address,) = named
        found = [index for index in range(len(self.pods)) if self.address(index) == address]
        return found[0] if found else None

    async def moved_from_0(self) -> bool:
        """The sentinels that answer agree on a master other than pod 0."""
        return await self.master_index() not in (None, 0)

    async def settled(self, master: int) -> bool:
        """Pod `master` is the master, every other Redis is its replica in sync, and every
        sentinel names it and knows the replicas and the other sentinels, all by name."""
        others = [index for index in range(len(self.pods)) if index != master]
        role = await ask(self.redis_ports[master], "ROLE")
        if not role or role[0] != "master" or len(role[2]) != len(others):
            return False
        for index in others:
            role = await ask(self.redis_ports[index], "ROLE")
            if not role or role[:4] != ["slave", HOST, self.redis_ports[master], "connected"]:
                return False
        for index, port in enumerate(self.sentinel_ports):
            if await self.named_master(index) != self.address(master):
                return False
            replicas = await ask(port, "SENTINEL", "REPLICAS", self.master_name)
            sentinels = await ask(port, "SENTINEL", "SENTINELS", self.master_name)
            if replicas is None or sentinels is None:
                return False
            if addresses(replicas) != sorted(map(self.address, others)):
                return False
            if addresses(sentinels) != sorted(
                f"{HOST}:{p}" for p in self.sentinel_ports if p != port
            ):
                return False
        return True

    async def rejoined(self, index: int, master: int) -> bool:
        """Pod `index` is back: its Redis a replica of pod `master` in sync, its sentinel
        naming that master."""
        role = await ask(self.redis_ports[index], "ROLE")
        expected = ["slave", HOST, self.redis_ports[master], "connected"]
        if not role or role[:4] != expected:
            return False
        return await self.named_master(index) == self.address(master)

    def store(self) -> RedisStore:
        """The gateway's Redis store, made from the ConfigMap's cache.sentinel, the nodes
        being the sentinels here."""
        gw = shared_gateway()
        document: Doc = {**gw.document, "cache": dict(gw.document["cache"])}
        sentinel = dict(document["cache"]["sentinel"])
        sentinel["nodes"] = [f"{HOST}:{port}" for port in self.sentinel_ports]
        document["cache"]["sentinel"] = sentinel
        passwords = {name: PASSWORD for name in redis_password_envs(document).values()}
        target = load_config(document, gw.environ | passwords).redis
        assert target is not None
        assert target.wait_replicas >= 1  # each write below waits for a replica
        return RedisStore(target)

    async def holding(self, key: str) -> list[int]:
        """The pods whose Redis has `key` (under the store's prefix)."""
        prefix = shared_gateway().config.cache.key_prefix
        found = [await ask(port, "GET", prefix + key) for port in self.redis_ports]
        return [index for index, value in enumerate(found) if value is not None]


@pytest.fixture
async def local_set(tmp_path: Path) -> AsyncIterator[LocalSet]:
    pods = LocalSet(tmp_path)
    try:
        # podManagementPolicy: Parallel, so every pod starts at once.
        await asyncio.gather(*(pod.start() for pod in pods.pods))
        yield pods
    finally:
        for pod in pods.pods:
            await pod.stop(signal.SIGKILL)


async def written(store: RedisStore, key: str) -> bool:
    try:
        await store.put(key, b"1", 600)
    except StoreError:
        return False
    return True


async def test_first_start_makes_pod_0_the_master_and_the_sentinels_agree(
    local_set: LocalSet,
) -> None:
    await until_answers(lambda: local_set.settled(0), SETTLE_S)
    for pod in local_set.pods[1:]:
        assert f"starting as a replica of {local_set.address(0)}" in pod.redis.output
    assert "starting as the master" in local_set.pods[0].redis.output
    store = local_set.store()
    try:
        # Written once the replicas confirm it: on a busy machine the first tries may not be
        # (a replica ROLE lists may not acknowledge yet).
        await until_answers(lambda: written(store, "first"), SETTLE_S)
        assert await store.get("first") == b"1"
    finally:
        await store.close()
    # The write waited for a replica: one has it the moment the store says it is written.
    holding = await local_set.holding("first")
    assert 0 in holding
    assert len(holding) >= 2


async def test_masters_pre_stop_hands_over_and_the_pod_comes_back_a_replica(
    local_set: LocalSet,
) -> None:
    await until_answers(lambda: local_set.settled(0), SETTLE_S)
    store = local_set.store()
    try:
        # Written once the replicas confirm it: on a busy machine the first tries may not be.
        await until_answers(lambda: written(store, "before"), SETTLE_S)
        status, output = await local_set.pods[0].pre_stop()
        assert status == 0, output
        await until_answers(local_set.moved_from_0, SETTLE_S)
        new = await local_set.master_index()
        assert new is not None
        assert f"handed the master role to {local_set.address(new)}" in output
        await local_set.pods[0].stop()
        await until_answers(lambda: written(store, "after"), SETTLE_S)
        assert new in await local_set.holding("before")
        assert new in await local_set.holding("after")

        # The pod comes back (same name, same volume): it follows the new master.
        await local_set.pods[0].start()
        await until_answers(lambda: local_set.rejoined(0, new), SETTLE_S)
        pod = local_set.pods[0]
        assert f"starting as a replica of {local_set.address(new)}" in pod.redis.output
        assert f"monitoring {local_set.master_name} at {local_set.address(new)}" in (
            pod.sentinel.output
        )
        assert 0 in await local_set.holding("after")
    finally:
        await store.close()


async def test_a_lost_master_is_failed_over_and_its_pod_comes_back_a_replica(
    local_set: LocalSet,
) -> None:
    await until_answers(lambda: local_set.settled(0), SETTLE_S)
    store = local_set.store()
    try:
        # Written once the replicas confirm it: on a busy machine the first tries may not be.
        await until_answers(lambda: written(store, "before"), SETTLE_S)
        # The node goes: no preStop, nothing flushed; two sentinels are left to agree.
        await local_set.pods[0].stop(signal.SIGKILL)

        await until_answers(local_set.moved_from_0, SETTLE_S)
        new = await local_set.master_index()
        assert new is not None
        await until_answers(lambda: written(store, "after"), SETTLE_S)
        assert new in await local_set.holding("before")

        await local_set.pods[0].start()
        await until_answers(lambda: local_set.rejoined(0, new), SETTLE_S)
        pod = local_set.pods[0]
        assert f"starting as a replica of {local_set.address(new)}" in pod.redis.output
        assert f"monitoring {local_set.master_name} at {local_set.address(new)}" in (
            pod.sentinel.output
        )
    finally:
        await store.close()
