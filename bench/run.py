"""Benchmarks for neu-gateway, all on 127.0.0.1. See bench/README.md.

python bench/run.py                       run, print, save bench/results/latest.json
python bench/run.py --save baseline       save as bench/results/baseline.json instead
python bench/run.py --baseline baseline   also print each figure beside the baseline's
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
UPLOAD_BYTES = 100 * 1024 * 1024
RSS_BUDGET_BYTES = 30 * 1024 * 1024
_LISTENING = re.compile(rb"listening on (http://[^\s\"]+)")
_drains: set[asyncio.Task[bytes]] = set()


async def start(
    *args: str, env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    """Start a server process; return it and the URL it prints once it listens."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    while line := await asyncio.wait_for(process.stdout.readline(), 30):
        if match := _LISTENING.search(line):
            _drains.add(asyncio.create_task(process.stdout.read()))  # keep the pipe drained
            return process, match.group(1).decode()
    raise SystemExit(f"{args} exited before listening")


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest resident set size the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


async def upload_memory(gateway_url: str, gateway_pid: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway_url + "/neuopenapi/notify/sendNotify", data={"a": "1"}
        ) as r:
            await r.read()
        before = peak_rss_bytes(gateway_pid)
        with tempfile.TemporaryFile() as blob:
            chunk = os.urandom(1 << 20)
            for _ in range(UPLOAD_BYTES // len(chunk)):
                blob.write(chunk)
            blob.seek(0)
            form = aiohttp.FormData()
            form.add_field("title", "bench")
            form.add_field("fileData", blob, filename="blob.bin")
            started = time.perf_counter()
            async with session.post(gateway_url + "/neuopenapi/file/upload", data=form) as r:
                body = await r.json()
                assert r.status == 200, body
            seconds = time.perf_counter() - started
    after = peak_rss_bytes(gateway_pid)
    return {
        "upload_peak_rss_increase_mb": (after - before) / 2**20,
        "upload_rss_budget_used": (after - before) / RSS_BUDGET_BYTES,
        "upload_100mb_seconds": seconds,
    }


async def throughput(url: str, requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in queue:
            started = time.perf_counter()
            async with session.post(
                url + "/neuopenapi/notify/sendNotify",
                data={
                    "openIds": f"o{i}",
                    "title": "t",
                    "text": "hello",
                    "navigateType": "1",
                    "notifyType": "1",
                    "language": "en_US",
                },
            ) as response:
                await response.read()
                assert response.status == 200
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests_per_second": requests / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def token_cache_memory(tokens: int = 20_000) -> dict[str, float]:
    """Bytes of memory one cached login takes in the in-memory store (answer, openId, reverse)."""
    import tracemalloc

    from gateway.core import jwt
    from gateway.core.clock import SystemClock
    from gateway.upstream.stores import MemoryStore
    from gateway.upstream.tokens import CachedAnswer, TokenCache

    clock = SystemClock()
    cache = TokenCache(MemoryStore(tokens, clock), clock, margin_s=60, wait_s=15)
    now = clock.now_ms() // 1000
    key = os.urandom(64)

    def answer_for(i: int) -> CachedAnswer:
        # The shape and size of the platform's answer, with a JWT like the doc's sample.
        claims = {
            "iat": now,
            "nbf": now,
            "exp": now + 604800,
            "openId": f"{i:032x}",
            "clientId": "tmfxzpo3g02unycoyl",
            "scope": "user.info,user.phone",
        }
        body = json.dumps(
            {
                "responseHeader": {"status": 200, "msg": "OK"},
                "response": {
                    "accessToken": jwt.encode(claims, key),
                    "expire": 604800,
                    "tokenType": "bearer",
                },
            }
        )
        return CachedAnswer(200, "application/json", body.encode())

    answers = [answer_for(i) for i in range(tokens)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, answer in enumerate(answers):

        async def fetch(answer: CachedAnswer = answer) -> CachedAnswer:
            return answer

        await cache.exchange("demo", f"code-{i:08d}-0000-0000-000000000000", "user.info", fetch)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"token_cache_bytes_per_token": used / tokens}


async def run(requests: int, concurrency: int) -> dict[str, float]:
    sink, sink_url = await start(sys.executable, str(HERE / "sink.py"))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.yaml"
        config.write_text(
            "listen: {host: 127.0.0.1, port: 0}\n"
            "apps:\n  demo:\n    appid: bench-app\n    secret_env: BENCH_SECRET\n"
            f"    upstream: {sink_url}\n"
            # The figures are the gateway's path, not the doc's rules for this endpoint.
            "    validation: off\n"
            "limits: {max_body_bytes: 268435456}\n"
        )
        gateway, gateway_url = await start(
            sys.executable,
            "-m",
            "gateway",
            "--log-level",
            "INFO",
            "serve",
            "-c",
            str(config),
            env={"BENCH_SECRET": "bench-secret"},
        )
        try:
            results = await upload_memory(gateway_url, gateway.pid)
            direct = await throughput(sink_url, requests, concurrency)
            via = await throughput(gateway_url, requests, concurrency)
        finally:
            for process in (gateway, sink):
                process.send_signal(signal.SIGTERM)
                await process.wait()
    results.update({f"direct_{k}": v for k, v in direct.items()})
    results.update({f"gateway_{k}": v for k, v in via.items()})
    results["gateway_throughput_vs_direct"] = (
        via["requests_per_second"] / direct["requests_per_second"]
    )
    results.update(await token_cache_memory())
    return results


def report(results: dict[str, float], baseline: dict[str, float] | None) -> None:
    if baseline is None:
        for name, value in results.items():
            print(f"{name:40} {value:12.3f}")
        return
    print(f"{'figure':40} {'baseline':>12} {'now':>12} {'now/baseline':>13}")
    for name, value in results.items():
        before = baseline.get(name)
        ratio = f"{value / before:13.3f}" if before else f"{'-':>13}"
        shown = before if before is not None else float("nan")
        print(f"{name:40} {shown:12.3f} {value:12.3f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--save", default="latest", help="name to save the results under")
    parser.add_argument("--baseline", help="name of saved results to compare with")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results = asyncio.run(run(args.requests, args.concurrency))
    baseline = None
    if args.baseline:
        baseline = json.loads((RESULTS / f"{args.baseline}.json").read_text())
    report(results, baseline)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.save}.json").write_text(json.dumps(results, indent=2) + "\n")
    verdict = "within" if results["upload_peak_rss_increase_mb"] <= 30 else "OVER"
    print(
        f"\n100 MB upload raised peak RSS by {results['upload_peak_rss_increase_mb']:.1f} MB: "
        f"{verdict} the 30 MB budget"
    )


if __name__ == "__main__":
    main()
