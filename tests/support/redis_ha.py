"""Redis Sentinel and Redis Cluster on loopback: real redis-server processes that the tests
start, crash (SIGKILL, as a lost machine) and watch fail over.

Each set keeps its files in a temporary directory of its own and its servers on free
127.0.0.1 ports; `start()` returns once the set could fail over, `failed_over()` once it has,
each bounded by a deadline whose failure shows the last state seen. A set made with `tls` serves
TLS alone, its servers' links to each other too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

HOST = "127.0.0.1"
# A crashed master is declared down after this long without an answer; with the sentinels'
# one-second rounds (their asks of each other, the promoted replica's INFO) a failover then
# takes 1-3 s. A failover that stalls is tried again after twice the failover timeout.
SENTINEL_DOWN_AFTER_MS = 500
SENTINEL_FAILOVER_TIMEOUT_MS = 2000
# A primary unanswering this long is suspected, then failed by the others' majority; its
# replica stands for election 0.5-1 s later.
CLUSTER_NODE_TIMEOUT_MS = 1000
START_DEADLINE_S = 20
QUERY_TIMEOUT_S = 1
POLL_S = 0.02
# A master streams its copy to a new replica at once, not after five seconds of waiting for
# others to share it; the replica reads it from the socket, leaving no RDB file behind.
REPLICATION_ARGS = ("--repl-diskless-sync-delay", "0", "--repl-diskless-load", "on-empty-db")
# A free port is only free until someone binds it: another test's server may take it first.
PORT_ATTEMPTS = 3

T = TypeVar("T")


async def _poll(what: str, deadline_s: float, check: Callable[[], Awaitable[T]]) -> T:
    """`check()`'s result once it passes: its failed assertions and the errors of servers that
    are not there yet (or no more) mean "not yet"; the last one is told at the deadline."""
    last: BaseException | None = None
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                try:
                    return await check()
                except (AssertionError, RedisError, OSError) as exc:
                    last = exc
                await asyncio.sleep(POLL_S)  # wait-ok: polled; a server's state has no event
    except TimeoutError:
        raise AssertionError(f"{what}: not within {deadline_s} s; last seen: {last}") from None


def _client(port: int, password: str | None, ca_file: Path | None = None) -> Redis:
    """A client of one server; over TLS, trusting `ca_file`, when given one."""
    tls = {"ssl": True, "ssl_ca_certs": str(ca_file)} if ca_file is not None else {}
    # No retries of its own: the polls above retry, and a dead server must fail at once.
    return Redis(
        host=HOST,
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=QUERY_TIMEOUT_S,
        socket_connect_timeout=QUERY_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        **tls,
    )


async def _role(port: int, password: str | None, ca_file: Path | None = None) -> str:
    async with _client(port, password, ca_file) as client:
        reply = await client.execute_command("ROLE")
    return str(reply[0])


def _flags(state: dict[str, Any]) -> set[str]:
    return set(str(state["flags"]).split(","))


class _ServerSet:
    """Servers started in one temporary directory, all stopped by `stop()`, even half-started.

    With `tls`, every server speaks TLS only (no plain port), with one certificate for
    127.0.0.1 kept in that directory: `ca_file` is what a client trusts.
    """

    def __init__(self, prefix: str, tls: bool = False) -> None:
        self._root = Path(tempfile.mkdtemp(prefix=prefix))
        self._servers: list[RedisServer] = []
        self.tls = tls

    @property
    def ca_file(self) -> Path | None:
        return self._root / "cert.pem" if self.tls else None

    @property
    def _tls_peer_args(self) -> list[str]:
        """A server's own links (a replica to its master, a sentinel to what it watches, a
        cluster bus) over TLS too: with no plain port, there is nothing else to reach."""
        return ["--tls-replication", "yes"] if self.tls else []

    async def _start_server(
        self,
        password: str | None,
        args: Callable[[Path], Sequence[str]] = lambda directory: (),
        sentinel_config: Callable[[Path], Path] | None = None,
    ) -> RedisServer:
        """A server in a directory of its own (`args` and `sentinel_config` are given it)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            directory = Path(tempfile.mkdtemp(dir=self._root))
            server = RedisServer(
                password,
                self._root if self.tls else None,
                sentinel_config=sentinel_config(directory) if sentinel_config else None,
                extra_args=["--dir", str(directory), *self._tls_peer_args, *args(directory)],
            )
            self._servers.append(server)
            try:
                await server.start()
            except AssertionError as exc:
                await server.stop()
                if "Address already in use" in str(exc) and attempt < PORT_ATTEMPTS:
                    continue
                raise
            return server
        raise AssertionError("unreachable: the last attempt raises")

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self._servers))
        shutil.rmtree(self._root, ignore_errors=True)


class SentinelSet(_ServerSet):
    """A master, its replica and three sentinels watching them with a quorum of two."""

    master_name = "neu-gateway-test"

    def __init__(
        self,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: bool = False,
    ) -> None:
        super().__init__("redis-sentinel-set-", tls)
        self.password = password
        self.sentinel_password = sentinel_password
        self._data: list[RedisServer] = []
        self._sentinels: list[RedisServer] = []

    @property
    def sentinel_nodes(self) -> list[str]:
        return [f"{HOST}:{sentinel.port}" for sentinel in self._sentinels]

    def _data_args(self, master_port: int | None) -> Callable[[Path], Sequence[str]]:
        args = [*REPLICATION_ARGS, *(["--masterauth", self.password] if self.password else [])]
        if master_port is not None:
            args += ["--replicaof", HOST, str(master_port)]
        return lambda directory: args

    def _sentinel_config(self, master_port: int) -> Callable[[Path], Path]:
        name = self.master_name

        def write(directory: Path) -> Path:
            lines = [
                "sentinel resolve-hostnames no",
                f"sentinel monitor {name} {HOST} {master_port} 2",
                f"sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}",
                f"sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {name} {self.password}")
            if self.sentinel_password:
                # What a sentinel gives the other sentinels, whose requirepass it is.
                lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
            # The sentinel rewrites its config file as it learns: a file of its own.
            path = directory / "sentinel.conf"
            path.write_text("\n".join(lines) + "\n")
            return path

        return write

    async def start(self) -> None:
        master = await self._start_server(self.password, self._data_args(None))
        self._data.append(master)
        replica = await self._start_server(self.password, self._data_args(master.port))
        self._data.append(replica)
        # A sentinel learns of the replica from the master's INFO, asked at once and then
        # every ten seconds: the replica is attached before any sentinel asks.
        await _poll("the replica's link to its master", START_DEADLINE_S, self._replica_linked)
        for _ in range(3):
            self._sentinels.append(
                await self._start_server(
                    self.sentinel_password, sentinel_config=self._sentinel_config(master.port)
                )
            )
        for sentinel in self._sentinels:
            what = f"sentinel {sentinel.port} seeing the whole set"
            await _poll(what, START_DEADLINE_S, partial(self._sees_the_set, sentinel))

    async def _replica_linked(self) -> None:
        async with _client(self._data[1].port, self.password, self.ca_file) as client:
            replication = await client.info("replication")
        assert replication.get("master_link_status") == "up", replication

    async def _sees_the_set(self, sentinel: RedisServer) -> None:
        async with _client(sentinel.port, self.sentinel_password, self.ca_file) as client:
            master = await client.sentinel_master(self.master_name)
            replicas = await client.sentinel_slaves(self.master_name)
            others = await client.sentinel_sentinels(self.master_name)
        assert _flags(master) == {"master"}, f"master flags {master['flags']}"
        seen = [(r["port"], r["flags"], r["master-link-status"]) for r in replicas]
        assert seen == [(self._data[1].port, "slave", "ok")], f"replicas {seen}"
        ports = sorted(s["port"] for s in others if _flags(s) == {"sentinel"})
        expected = sorted(s.port for s in self._sentinels if s is not sentinel)
        assert ports == expected, f"{ports} of the other sentinels {expected}"

    async def _named_master(self, sentinel: RedisServer) -> int:
        async with _client(sentinel.port, self.sentinel_password, self.ca_file) as client:
            address = await client.sentinel_get_master_addr_by_name(self.master_name)
        assert address is not None, f"sentinel {sentinel.port} names no master"
        return int(address[1])

    async def master_port(self) -> int:
        """The master's port, as a sentinel names it."""
        return await _poll("a sentinel naming the master", START_DEADLINE_S, self._any_named)

    async def _any_named(self) -> int:
        errors = []
        for sentinel in self._sentinels:
            try:
                return await self._named_master(sentinel)
            except (AssertionError, RedisError, OSError) as exc:
                errors.append(exc)
        raise AssertionError(f"no sentinel names a master: {errors}")

    async def kill_master(self) -> int:
        """SIGKILLs the current master; returns its port."""
        port = await self.master_port()
        await next(node for node in self._data if node.port == port).kill()
        return port

    async def failed_over(self, old_port: int, deadline_s: float = 15) -> int:
        """Waits until every sentinel names a master other than `old_port` and that node says
        it is a master; returns its port."""

        async def new_master() -> int:
            named = {await self._named_master(sentinel) for sentinel in self._sentinels}
            assert len(named) == 1, f"the sentinels name {sorted(named)}"
            (port,) = named
            assert port != old_port, f"the sentinels still name {old_port}"
            role = await _role(port, self.password, self.ca_file)
            assert role == "master", f"{port} named master but says {role}"
            return port

        return await _poll(f"a failover from {old_port}", deadline_s, new_master)


class ClusterSet(_ServerSet):
    """Three primaries with one replica each, sharing the 16384 slots."""

    size = 6

    def __init__(self, password: str | None = None, tls: bool = False) -> None:
        super().__init__("redis-cluster-set-", tls)
        self.password = password
        self._nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> list[str]:
        return [f"{HOST}:{node.port}" for node in self._nodes]

    def _node_args(self, directory: Path) -> list[str]:
        return [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(directory / "nodes.conf"),
            "--cluster-node-timeout",
            str(CLUSTER_NODE_TIMEOUT_MS),
            # The bus port would be the data port + 10000, past 65535 for half the free ports.
            "--cluster-port",
            str(free_port()),
            *REPLICATION_ARGS,
            *(["--masterauth", self.password] if self.password else []),
            *(["--tls-cluster", "yes"] if self.tls else []),
        ]

    async def start(self) -> None:
        for _ in range(self.size):
            self._nodes.append(await self._start_server(self.password, self._node_args))
        await self._create()
        await _poll("the cluster being ok on every node", START_DEADLINE_S, self._all_ok)

    async def _create(self) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            pytest.fail("redis-cli is not installed: ./scripts/test installs it from Debian")
        # The password by environment: `-a` would be seen in the process list, and warned of.
        env = {**os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {})}
        tls = ["--tls", "--cacert", str(self.ca_file)] if self.tls else []
        create = await asyncio.create_subprocess_exec(
            binary,
            *tls,
            "--cluster",
            "create",
            *self.startup_nodes,
            "--cluster-replicas",
            "1",
            "--cluster-yes",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        try:
            async with asyncio.timeout(START_DEADLINE_S):
                output, _ = await create.communicate()
        finally:
            if create.returncode is None:
                create.kill()
                await create.wait()
        assert create.returncode == 0, f"redis-cli --cluster create failed:\n{output.decode()}"

    async def _all_ok(self) -> None:
        roles = []
        for node in self._nodes:
            async with _client(node.port, self.password, self.ca_file) as client:
                state = await client.execute_command("CLUSTER", "INFO")
                replication = await client.info("replication")
            assert "cluster_state:ok" in state.splitlines(), f"{node.port}: {state}"
            if replication["role"] == "slave":
                assert replication["master_link_status"] == "up", f"{node.port}: {replication}"
            roles.append(replication["role"])
        assert sorted(roles) == ["master"] * 3 + ["slave"] * 3, f"roles {roles}"

    async def _slot_owner(self, node: RedisServer, key: str) -> int:
        """The primary serving `key`'s slot, in `node`'s view."""
        async with _client(node.port, self.password, self.ca_file) as client:
            slot = await client.execute_command("CLUSTER", "KEYSLOT", key)
            ranges = await client.execute_command("CLUSTER", "SLOTS")
        for first, last, primary, *_replicas in ranges:
            if first <= slot <= last:
                return int(primary[1])
        raise AssertionError(f"slot {slot} has no primary in the view of {node.port}")

    def _live(self) -> list[RedisServer]:
        return [node for node in self._nodes if node.running]

    async def primary_port_for(self, key: str) -> int:
        """The port of the primary serving `key`, as the first live node sees it."""
        return await _poll(
            f"the primary of {key!r}",
            START_DEADLINE_S,
            lambda: self._slot_owner(self._live()[0], key),
        )

    async def kill_primary_for(self, key: str) -> int:
        """SIGKILLs the primary serving `key`; returns its port."""
        port = await self.primary_port_for(key)
        await next(node for node in self._nodes if node.port == port).kill()
        return port

    async def failed_over(self, key: str, old_port: int, deadline_s: float = 15) -> int:
        """Waits until every live node says the cluster is ok and that `key`'s slot is served
        by one live primary other than `old_port`; returns its port."""

        async def served_again() -> int:
            live = self._live()
            owners = set()
            for node in live:
                async with _client(node.port, self.password, self.ca_file) as client:
                    state = await client.execute_command("CLUSTER", "INFO")
                assert "cluster_state:ok" in state.splitlines(), f"{node.port} not ok"
                owners.add(await self._slot_owner(node, key))
            assert len(owners) == 1, f"the live nodes name {sorted(owners)} for {key!r}"
            (port,) = owners
            assert port != old_port, f"{key!r} still served by {old_port}"
            assert port in {node.port for node in live}, f"{key!r} served by {port}, not live"
            role = await _role(port, self.password, self.ca_file)
            assert role == "master", f"{port} serves {key!r} but says {role}"
            return port

        return await _poll(f"{key!r} failed over from {old_port}", deadline_s, served_again)


@pytest.fixture
async def redis_sentinel_set(request: pytest.FixtureRequest) -> AsyncIterator[SentinelSet]:
    """A started SentinelSet; its keyword arguments (passwords, tls) by indirect parametrization."""
    sentinels = SentinelSet(**getattr(request, "param", {}))
    try:
        await sentinels.start()
        yield sentinels
    finally:
        await sentinels.stop()


@pytest.fixture
async def redis_cluster_set(request: pytest.FixtureRequest) -> AsyncIterator[ClusterSet]:
    """A started ClusterSet; its keyword arguments (a password, tls) by indirect parametrization."""
    cluster = ClusterSet(**getattr(request, "param", {}))
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
