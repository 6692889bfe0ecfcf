"""The gateway against nginx and a naive signing proxy, in one run on one machine.

Starts, on 127.0.0.1: a stub platform (nginx `return 200` with the platform's envelope),
nginx as a pass-through proxy (the limit), the naive proxy (bench/naive_proxy.py, the
baseline), and the gateway with 1 and 2 workers with every feature on (callers, validation,
metrics, the JSON access log). Drives each with wrk: a form POST with 6 params and a GET, at
concurrency 1, 16 and 64, repeats interleaved. Then: a 50 ms upstream at 512 concurrent
callers; peak RSS for 1 and 4 concurrent 100 MB uploads; RSS over many small requests.

Needs Debian's nginx, wrk and redis-server. Usage:

    .venv/bin/python bench/compare.py [--duration 5] [--repeats 3] [--small-requests 1000000]

Prints medians and ratios, and writes bench/results/compare.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
ENVELOPE = '{"responseHeader": {"status": 200, "msg": "OK"}, "response": {"ok": true}}'
PATH = "/neuopenapi/bench/echo"  # undocumented: no extras run
FORM = "a=1&b=2&c=3&d=4&e=5&f=6"
TOKEN = "bench-caller-token-0123456789abcdef"
CLK_TCK = os.sysconf("SC_CLK_TCK")
UPLOAD_BYTES = 100 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Target:
    name: str
    url: str
    pids: list[int] = field(default_factory=list)

    def cpu_s(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime, fields 14 and 15 of stat (counted from the one after the name).
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


async def wait_port(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return
    raise SystemExit(f"nothing listens on {port}")


@asynccontextmanager
async def process(
    *argv: str, env: dict[str, str] | None = None, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    out = open(log, "wb") if log else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=out, stderr=out, env={**os.environ, **(env or {})}
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(2)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
        if log:
            out.close()  # type: ignore[union-attr]


def nginx_conf(directory: Path, name: str, port: int, workers: int, body: str) -> Path:
    conf = directory / f"{name}.conf"
    (directory / name).mkdir(exist_ok=True)
    conf.write_text(
        f"worker_processes {workers};\npid {directory / name}/nginx.pid;\n"
        f"error_log {directory / name}/error.log;\nevents {{ worker_connections 4096; }}\n"
        "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
        f"  client_body_temp_path {directory / name}/body;\n"
        f"  proxy_temp_path {directory / name}/proxy;\n{body}\n}}\n"
    )
    return conf


def wrk_script(directory: Path, method: str) -> Path:
    script = directory / f"{method}.lua"
    headers = f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
    if method == "POST":
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{FORM}"\n'
            'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n' + headers
        )
    else:
        script.write_text('wrk.method = "GET"\n' + headers)
    return script


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_PCT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$", re.MULTILINE)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")
_COUNT = re.compile(r"(\d+) requests in")


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    requests: int
    errors: str


async def wrk(
    target: Target, directory: Path, method: str, connections: int, duration: float
) -> Run:
    url = target.url + PATH + ("" if method == "POST" else "?" + FORM)
    threads = 1 if connections < 16 else 2
    cpu_before = target.cpu_s()
    proc = await asyncio.create_subprocess_exec(
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        "-s", str(wrk_script(directory, method)), url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    cpu = target.cpu_s() - cpu_before
    if _RPS.search(out) is None:
        raise SystemExit(f"wrk against {target.name} ({url}) failed:\n{out}")
    rps = float(_RPS.search(out).group(1))  # type: ignore[union-attr]
    count = int(_COUNT.search(out).group(1))  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    pct = {m.group(1): float(m.group(2)) * scale[m.group(3)] for m in _PCT.finditer(out)}
    errors = "; ".join(e.group(0) for e in _ERRORS.finditer(out))
    return Run(rps, pct.get("50", 0), pct.get("99", 0), cpu / max(count, 1) * 1e6, count, errors)


def gateway_config(directory: Path, upstream: str, port: int, redis_url: str | None) -> Path:
    cache = f"cache: {{backend: redis, url: '{redis_url}'}}\n" if redis_url else ""
    path = directory / f"gateway-{port}.yaml"
    path.write_text(
        f"listen: {{host: 127.0.0.1, port: {port}}}\n"
        "apps:\n  demo:\n    appid: demo-appid\n    secret_env: NEU_SECRET_DEMO\n"
        f"    upstream: {upstream}\n"
        "callers:\n  bench:\n    token_env: BENCH_TOKEN\n    apps: [demo]\n"
        '    allow: ["* /neuopenapi/*"]\n'
        # One caller stands for the 512 callers of the slow-upstream scenario.
        "    max_in_flight: 512\n"
        "logging: {format: json}\nshutdown: {drain_s: 0}\n"
        # Room for the 100 MB uploads of the memory scenario.
        "limits: {max_body_bytes: 209715200}\n" + cache
    )
    return path


GATEWAY_ENV = {"NEU_SECRET_DEMO": "demo-secret", "BENCH_TOKEN": TOKEN}


def median(runs: Sequence[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


async def throughput(args: argparse.Namespace, directory: Path) -> dict[str, object]:
    stub_port, pass_port = free_port(), free_port()
    gw1_port, gw2_port, redis_port = free_port(), free_port(), free_port()
    stub_conf = nginx_conf(directory, "stub", stub_port, 1, (
        f"  server {{ listen 127.0.0.1:{stub_port}; location / {{ default_type application/json;"
        f" return 200 '{ENVELOPE}'; }} }}"
    ))  # fmt: skip
    pass_conf = nginx_conf(directory, "pass", pass_port, 2, (
        f"  upstream stub {{ server 127.0.0.1:{stub_port}; keepalive 64; }}\n"
        f"  server {{ listen 127.0.0.1:{pass_port}; location / {{ proxy_pass http://stub;"
        ' proxy_http_version 1.1; proxy_set_header Connection ""; } }'
    ))  # fmt: skip
    stub_url = f"http://127.0.0.1:{stub_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    python = sys.executable
    async with (
        process("nginx", "-c", str(stub_conf), "-g", "daemon off;") as stub,
        process("nginx", "-c", str(pass_conf), "-g", "daemon off;") as passthrough,
        process("redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"),
        process(python, str(HERE / "naive_proxy.py"), stub_url) as naive,
        process(python, "-m", "gateway", "serve", "-c",
                str(gateway_config(directory, stub_url, gw1_port, None)),
                env=GATEWAY_ENV, log=directory / "gateway1.log") as gw1,
    ):  # fmt: skip
        for port in (stub_port, pass_port, redis_port):
            await wait_port(port)
        async with process(python, "-m", "gateway", "serve", "--workers", "2", "-c",
                           str(gateway_config(directory, stub_url, gw2_port, redis_url)),
                           env=GATEWAY_ENV, log=directory / "gateway2.log") as gw2:  # fmt: skip
            naive_url = await naive_url_of(naive)
            for port in (gw1_port, gw2_port):
                await wait_port(port)
            await asyncio.sleep(1)
            targets = [
                Target("stub", stub_url, [stub.pid, *children(stub.pid)]),
                Target("nginx", f"http://127.0.0.1:{pass_port}",
                       [passthrough.pid, *children(passthrough.pid)]),
                Target("naive", naive_url, [naive.pid]),
                Target("gateway", f"http://127.0.0.1:{gw1_port}", [gw1.pid]),
                Target("gateway x2", f"http://127.0.0.1:{gw2_port}",
                       [gw2.pid, *children(gw2.pid)]),
            ]  # fmt: skip
            runs: dict[tuple[str, str, int], list[Run]] = {}
            for target in targets:  # warm-up
                await wrk(target, directory, "GET", 16, 1)
            for _ in range(args.repeats):
                for method in ("POST", "GET"):
                    for connections in (1, 16, 64):
                        for target in targets:
                            if target.name == "stub" and connections != 1:
                                continue
                            run = await wrk(target, directory, method, connections, args.duration)
                            runs.setdefault((target.name, method, connections), []).append(run)
    return summarise(runs)


async def naive_url_of(naive: asyncio.subprocess.Process) -> str:
    # The naive proxy's port is in its process's listening sockets.
    for _ in range(500):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:  # noqa: ASYNC240
            parts = line.split()
            inode = parts[9]
            if parts[3] == "0A" and inode in _socket_inodes(naive.pid):
                return f"http://127.0.0.1:{int(parts[1].split(':')[1], 16)}"
        await asyncio.sleep(0.02)
    raise SystemExit("the naive proxy never listened")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def summarise(runs: dict[tuple[str, str, int], list[Run]]) -> dict[str, object]:
    table = {
        f"{name} {method} c{conns}": {
            "rps": median(group, "rps"),
            "p50_ms": median(group, "p50_ms"),
            "p99_ms": median(group, "p99_ms"),
            "cpu_us_per_request": median(group, "cpu_us"),
            "errors": sorted({run.errors for run in group if run.errors}),
        }
        for (name, method, conns), group in runs.items()
    }

    def figure(name: str, method: str, conns: int, key: str) -> float:
        value = table[f"{name} {method} c{conns}"][key]
        assert isinstance(value, float)
        return value

    ratios = {}
    for method in ("POST", "GET"):
        ratios[f"{method} gateway/naive rps c64"] = figure("gateway", method, 64, "rps") / figure(
            "naive", method, 64, "rps"
        )
        ratios[f"{method} gateway/nginx rps c64"] = figure("gateway", method, 64, "rps") / figure(
            "nginx", method, 64, "rps"
        )
        ratios[f"{method} gateway x2/nginx rps c64"] = figure(
            "gateway x2", method, 64, "rps"
        ) / figure("nginx", method, 64, "rps")
        ratios[f"{method} 2 workers/1 worker rps c64"] = figure(
            "gateway x2", method, 64, "rps"
        ) / figure("gateway", method, 64, "rps")
        ratios[f"{method} added p50 ms c1"] = figure("gateway", method, 1, "p50_ms") - figure(
            "stub", method, 1, "p50_ms"
        )
        ratios[f"{method} added p99 ms c1"] = figure("gateway", method, 1, "p99_ms") - figure(
            "stub", method, 1, "p99_ms"
        )
        ratios[f"{method} gateway CPU us/request c64"] = figure(
            "gateway", method, 64, "cpu_us_per_request"
        )
        ratios[f"{method} naive CPU us/request c64"] = figure(
            "naive", method, 64, "cpu_us_per_request"
        )
    return {"table": table, "ratios": ratios}


# A platform that answers after 50 ms. Bare asyncio and httptools, not aiohttp: on two shared
# cores, the stub's own CPU would otherwise be what the scenario measures.
SLOW_STUB = """
import asyncio, sys, httptools, uvloop
BODY = sys.argv[2].encode()
ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n"
          % len(BODY) + BODY)
class Stub(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.parser = transport, httptools.HttpRequestParser(self)
        self.loop = asyncio.get_running_loop()
    def data_received(self, data):
        self.parser.feed_data(data)
    def on_message_complete(self):
        self.loop.call_later(0.05, self.answer)
    def answer(self):
        if not self.transport.is_closing():
            self.transport.write(ANSWER)
async def main():
    # A backlog for the 512 connections the gateway opens at once, as the platform's would.
    await asyncio.get_running_loop().create_server(
        Stub, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await asyncio.Event().wait()
uvloop.run(main())
"""


async def slow_upstream(args: argparse.Namespace, directory: Path) -> dict[str, object]:
    """512 callers against a platform that answers after 50 ms, through 1 and 2 workers."""
    stub_port, redis_port = free_port(), free_port()
    (directory / "slow.py").write_text(SLOW_STUB)
    stub_url = f"http://127.0.0.1:{stub_port}"
    results: dict[str, object] = {}
    async with (
        process(sys.executable, str(directory / "slow.py"), str(stub_port), ENVELOPE),
        process("redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"),
    ):
        await wait_port(stub_port)
        await wait_port(redis_port)
        for workers in (1, 2):
            gw_port = free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0" if workers > 1 else None
            config = gateway_config(directory, stub_url, gw_port, redis_url)
            argv = (sys.executable, "-m", "gateway", "serve", "--workers", str(workers))
            async with process(*argv, "-c", str(config), env=GATEWAY_ENV,
                               log=directory / f"gateway-slow{workers}.log") as gw:  # fmt: skip
                await wait_port(gw_port)
                await asyncio.sleep(1)  # the workers' start
                target = Target("gateway", f"http://127.0.0.1:{gw_port}",
                                [gw.pid, *children(gw.pid)])  # fmt: skip
                run = await wrk(target, directory, "GET", 512, args.duration * 2)
            results[f"{workers} worker{'s' if workers > 1 else ''}"] = {
                "p50_ms": run.p50_ms, "p99_ms": run.p99_ms, "rps": run.rps, "errors": run.errors
            }  # fmt: skip
    return results


def rss_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


async def memory(args: argparse.Namespace, directory: Path) -> dict[str, object]:
    sink_port, gw_port = free_port(), free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    (directory / "sink_at.py").write_text(
        "import sys; sys.argv[1:] = []\n" + (HERE / "sink.py").read_text()
    )
    results: dict[str, object] = {}
    async with process(sys.executable, str(HERE / "sink.py"), log=directory / "sink.log") as sink:
        sink_url = await sink_url_of(directory / "sink.log")
        del sink
        for uploads in (1, 4):
            port = free_port()
            config = gateway_config(directory, sink_url, port, None)
            log = directory / f"gw-up{uploads}.log"
            argv = (sys.executable, "-m", "gateway", "serve", "-c", str(config))
            async with process(*argv, env=GATEWAY_ENV, log=log) as gw:
                await wait_port(port)
                url = f"http://127.0.0.1:{port}/neuopenapi/file/upload"
                await upload(url, 1024)  # warm-up
                before = rss_kb(gw.pid, "VmHWM")
                await asyncio.gather(*(upload(url, UPLOAD_BYTES) for _ in range(uploads)))
                results[f"peak RSS increase MB, {uploads} x 100 MB uploads"] = (
                    rss_kb(gw.pid, "VmHWM") - before
                ) / 1024
        async with process(sys.executable, "-m", "gateway", "serve", "-c",
                           str(gateway_config(directory, sink_url, gw_port, None)),
                           env=GATEWAY_ENV, log=directory / "gw-small.log") as gw:  # fmt: skip
            await wait_port(gw_port)
            target = Target("gateway", f"http://127.0.0.1:{gw_port}", [gw.pid])
            await wrk(target, directory, "POST", 64, 2)
            start = rss_kb(gw.pid, "VmRSS")
            done = 0
            while done < args.small_requests:
                done += (await wrk(target, directory, "POST", 64, 10)).requests
            results["small requests sent"] = done
            results["RSS MB after warm-up"] = start / 1024
            results[f"RSS MB after {done} small requests"] = rss_kb(gw.pid, "VmRSS") / 1024
    return results


async def sink_url_of(log: Path) -> str:
    for _ in range(500):
        text = log.read_text() if log.exists() else ""  # noqa: ASYNC240 - a small log file
        if match := re.search(r"listening on (http://[^\s\"]+)", text):
            return match.group(1)
        await asyncio.sleep(0.02)
    raise SystemExit("the sink never listened")


async def upload(url: str, size: int) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        block = b"x" * (1 << 20)
        for start in range(0, size, len(block)):
            yield block[: min(len(block), size - start)]

    form = aiohttp.FormData()
    form.add_field("fileData", chunks(), filename="big.bin")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=form, headers=headers) as response,
    ):
        await response.read()
        assert response.status == 200, response.status


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-requests", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["throughput", "slow", "memory"])
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install nginx wrk redis-server")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        report: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        RESULTS.mkdir(exist_ok=True)
        scenarios = {
            "throughput": ("throughput", throughput),
            "slow": ("slow upstream, 512 callers", slow_upstream),
            "memory": ("memory", memory),
        }
        for choice, (title, scenario) in scenarios.items():
            if args.only in (None, choice):
                report[title] = await scenario(args, directory)
                # Written after each scenario, so a later failure loses nothing.
                (RESULTS / "compare.json").write_text(json.dumps(report, indent=2))
    print_report(report)


def print_report(report: dict[str, object]) -> None:
    print(f"# {report['date']}")
    throughput_report = report.get("throughput")
    if isinstance(throughput_report, dict):
        print(f"{'target':28} {'rps':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
        for name, row in throughput_report["table"].items():
            print(
                f"{name:28} {row['rps']:9.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
                f"{row['cpu_us_per_request']:11.0f} {' '.join(row['errors'])}"
            )
        print()
        for name, value in throughput_report["ratios"].items():
            # Three places: 0.196 of nginx is not the 0.20 two would print.
            print(f"{name:40} {value:8.3f}")
    for key in ("slow upstream, 512 callers", "memory"):
        if key in report:
            print(f"\n{key}:")
            for name, value in report[key].items():  # type: ignore[attr-defined]
                print(f"  {name}: {value}")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
