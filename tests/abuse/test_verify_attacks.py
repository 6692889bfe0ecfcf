"""`neu-gateway callbacks verify` fed what no saved delivery is: a file of a gigabyte,
/dev/zero, a FIFO, random bytes, a head of 100 000 lines or of one megabyte-long line, NUL
bytes. Each is the command as its users run it, in its own process: a one-line reason on
stderr, exit 2 (or 1 for a delivery that is read but does not verify), no traceback, promptly,
and a peak memory (the process's VmHWM) bounded by what the limits allow over that of a run on
a small delivery."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.cli.deliveries import MAX_DELIVERY_BYTES
from gateway.core.webhooks import signed_headers, signing_key

# The processes are started and waited for on the module's loop (conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")
# Each run's own peak memory, and a deadline of seconds: nothing a neighbour can disturb, so
# these run beside the other tests, not alone (conftest.py).
BESIDE_OTHERS = True

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# `python -m gateway`, which on its way out writes its peak memory (VmHWM) to the file named
# first. Not the rusage of wait4: a child's maxrss starts at its parent's RSS (the kernel
# keeps the old image's peak across exec), and here the parent is the whole test run.
PEAK_REPORTING = """
import atexit, re, runpy, sys
report = sys.argv.pop(1)
def peak():
    status = open('/proc/self/status').read()
    open(report, 'w').write(re.search(r'^VmHWM:\\s+(\\d+) kB', status, re.M).group(1))
atexit.register(peak)
sys.argv[0] = 'neu-gateway'
runpy.run_module('gateway', run_name='__main__')
"""
RUN_TIMEOUT_S = 30
# However large the input, the command returns about as soon as it starts.
PROMPT_S = 10
MB = 1024 * 1024


@dataclass
class Finished:
    status: int
    stdout: str
    stderr: str
    peak_mb: float
    took_s: float


async def verify_command(*argv: str, stdin: Path | None = None) -> Finished:
    """The command run to its end, with its peak memory."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "peak"
        with open(stdin or os.devnull, "rb") as given:  # noqa: ASYNC230 - opened, not read
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                PEAK_REPORTING,
                str(report),
                "callbacks",
                "verify",
                *argv,
                stdin=given,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"still running after {RUN_TIMEOUT_S} s: {argv}") from None
        assert process.returncode is not None
        finished = Finished(
            process.returncode,
            stdout.decode(),
            stderr.decode(),
            int(report.read_text()) / 1024,
            time.monotonic() - started,
        )
    assert "Traceback" not in finished.stderr, finished.stderr
    for shown_never in (SECRET, SECRET.removeprefix("whsec_")):
        assert shown_never not in finished.stdout + finished.stderr
    return finished


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "signing-secret"
    path.write_text(SECRET)
    return path


def signed_delivery(body: bytes, head_extra: bytes = b"") -> bytes:
    headers = signed_headers([signing_key(SECRET)], "T1:2", int(time.time()), body)
    head = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())
    return b"POST /payments HTTP/1.1\r\n" + head_extra + head + b"\r\n" + body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def baseline_mb(
    secret_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[float]:
    """The peak memory of a run on a small delivery: the interpreter and its imports."""
    path = tmp_path_factory.mktemp("baseline") / "delivery.http"
    path.write_bytes(signed_delivery(b'{"tradeNo":"T1"}'))
    finished = await verify_command("--secret-file", str(secret_file), str(path))
    assert finished.status == 0, finished.stderr
    yield finished.peak_mb


def assert_refused(finished: Finished, status: int, why: str) -> None:
    assert finished.status == status, finished.stderr
    assert finished.stdout == ""
    assert finished.stderr.startswith(f"neu-gateway: {why}"), finished.stderr
    assert finished.took_s < PROMPT_S


async def test_a_file_of_a_gigabyte_is_refused_unread(
    secret_file: Path, tmp_path: Path, baseline_mb: float
) -> None:
    huge = tmp_path / "huge.http"
    with huge.open("wb") as sparse:
        sparse.truncate(1 << 30)
    finished = await verify_command("--secret-file", str(secret_file), str(huge))
    assert_refused(finished, 2, f"{huge} holds more than 16 MiB")
    assert finished.peak_mb - baseline_mb < 4, finished


async def test_a_file_whose_size_says_nothing_is_read_all_the_same(
    secret_file: Path, baseline_mb: float
) -> None:
    """A file of /proc says it holds 0 bytes, and holds more: it is read to its end."""
    finished = await verify_command("--secret-file", str(secret_file), "/proc/self/maps")
    assert_refused(finished, 2, "no empty line after the headers")
    assert finished.peak_mb - baseline_mb < 4, finished


@pytest.mark.parametrize("flag", [[], ["--body"]], ids=["as DELIVERY", "as --body"])
async def test_dev_zero_by_name_is_refused_as_no_regular_file(
    secret_file: Path, baseline_mb: float, flag: list[str]
) -> None:
    finished = await verify_command("--secret-file", str(secret_file), *flag, "/dev/zero")
    assert_refused(
        finished,
        2,
        "/dev/zero is a character device, not a regular file: for a pipe, give - and the "
        "pipe on stdin",
    )
    assert finished.peak_mb - baseline_mb < 4, finished


@pytest.mark.parametrize("flag", [[], ["--body"]], ids=["as DELIVERY", "as --body"])
async def test_dev_zero_on_stdin_is_read_to_the_limit_and_refused(
    secret_file: Path, baseline_mb: float, flag: list[str]
) -> None:
    finished = await verify_command(
        "--secret-file", str(secret_file), *flag, "-", stdin=Path("/dev/zero")
    )
    assert_refused(finished, 2, "stdin holds more than 16 MiB")
    # What was read up to the limit, and no more: refused before it is joined.
    assert finished.peak_mb - baseline_mb < 1.5 * MAX_DELIVERY_BYTES / MB, finished


@pytest.mark.parametrize("writer", [False, True], ids=["no writer", "a writer that never writes"])
async def test_a_fifo_is_refused_at_once(
    secret_file: Path, tmp_path: Path, baseline_mb: float, writer: bool
) -> None:
    fifo = tmp_path / "delivery.fifo"
    os.mkfifo(fifo)
    # Held open for reading and writing: a writer that is there, and sends nothing.
    held = os.open(fifo, os.O_RDWR | os.O_NONBLOCK) if writer else None
    try:
        finished = await verify_command("--secret-file", str(secret_file), str(fifo))
    finally:
        if held is not None:
            os.close(held)
    assert_refused(finished, 2, f"{fifo} is a FIFO, not a regular file")
    assert finished.peak_mb - baseline_mb < 4, finished


def head_of(lines: int, line: bytes) -> bytes:
    return line * lines + b"\r\n" + b'{"tradeNo":"T1"}'


@pytest.mark.parametrize(
    ("make", "status", "why"),
    [
        pytest.param(
            lambda: head_of(100_000, b"X-Pad: v\r\n"),
            2,
            "no empty line within the first 64 KiB",
            id="100 000 header lines",
        ),
        pytest.param(
            lambda: head_of(1, b"X-Pad: " + b"v" * MB + b"\r\n"),
            2,
            "no empty line within the first 64 KiB",
            id="a header line of 1 MB",
        ),
        pytest.param(
            lambda: b"\x00" * MB, 2, "no empty line within the first 64 KiB", id="1 MB of NUL bytes"
        ),
        pytest.param(
            lambda: b"web\x00hook-id: T1:2\r\n\r\n{}",
            2,
            "line 1 is not a header line",
            id="NUL in a name",
        ),
        pytest.param(
            lambda: signed_delivery(b"{}", b"X-Note: a\x00b\r\n"),
            2,
            "line 2: the value of X-Note holds a control character (0x00)",
            id="NUL in a value",
        ),
        pytest.param(
            lambda: b"\r\n" * 3 * MB, 1, "not verified: no webhook-id", id="3 MB of empty lines"
        ),
        pytest.param(lambda: random.Random(7).randbytes(4 * MB), 2, "", id="4 MB of random bytes"),
    ],
)
async def test_a_hostile_delivery_is_refused_with_its_reason(
    secret_file: Path,
    tmp_path: Path,
    baseline_mb: float,
    make: Callable[[], bytes],
    status: int,
    why: str,
) -> None:
    content = make()
    path = tmp_path / "delivery.http"
    path.write_bytes(content)
    for argv, stdin in (([str(path)], None), (["-"], path)):
        finished = await verify_command("--secret-file", str(secret_file), *argv, stdin=stdin)
        assert_refused(finished, status, why)
        assert finished.stderr.count("\n") <= 2, finished.stderr
        # The input, and the body cut from it, within the limit.
        bound_mb = 2.5 * len(content) / MB + 4
        assert finished.peak_mb - baseline_mb < bound_mb, finished


async def test_a_body_of_nul_bytes_near_the_limit_verifies_in_bounded_memory(
    secret_file: Path, tmp_path: Path, baseline_mb: float
) -> None:
    path = tmp_path / "delivery.http"
    path.write_bytes(signed_delivery(b"\x00" * (MAX_DELIVERY_BYTES - 4096)))
    finished = await verify_command("--secret-file", str(secret_file), str(path))
    assert finished.status == 0, finished.stderr
    assert finished.stdout.startswith("verified: webhook-id T1:2")
    # The file read and its body; then, the file let go, the body and the signed message
    # (the id and timestamp before the body).
    assert finished.peak_mb - baseline_mb < 2.5 * MAX_DELIVERY_BYTES / MB, finished
