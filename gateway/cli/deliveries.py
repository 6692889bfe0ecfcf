"""`neu-gateway callbacks verify`: whether a delivery an app's service saved verifies with its
signing secret, and if not, why.

The delivery is read as it was received: an optional request line, header lines, an empty
line, then the body byte for byte (or `--body FILE` and `-H 'Name: value'`). The input is a
file or stdin someone chose, so it is read within bounds: a regular file only (a FIFO would
block, /dev/zero never ends), never more than MAX_DELIVERY_BYTES, the head within
MAX_HEAD_BYTES. No message echoes a line of the input (a secret file given as the delivery by
mistake would be shown) nor, anywhere, the secret.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from gateway.cli.config_file import EXIT_CONFIG, EXIT_INVALID, EXIT_OK, load_or_report
from gateway.config.credential_files import CredentialFileError, read_credential_file
from gateway.config.schema import DEFAULT_CONFIG_PATH
from gateway.core.clock import SystemClock
from gateway.core.headers import NOT_IN_A_HEADER_VALUE
from gateway.core.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    SIGNED_HEADERS,
    TOLERANCE_S,
    SigningKey,
    SigningSecretError,
    Verdict,
    signing_key,
    verify,
)

# Far above a payment callback's trade detail (a few kB), far below harm.
MAX_DELIVERY_BYTES = 16 * 1024 * 1024
# HTTP servers refuse heads of 8 to 16 kB; this leaves room for hand-written ones.
MAX_HEAD_BYTES = 64 * 1024
_CHUNK_BYTES = 64 * 1024
_REQUEST_LINE = re.compile(r"[A-Z]+ \S+ HTTP/\d(?:\.\d)?")
# RFC 9110 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SHOWN_CHARS = 80
_LISTED_HEADERS = 20
# Bodies larger than this (a trade's detail is a few kB) are not tried with other line ends.
_HINT_MAX_BYTES = 1024 * 1024


class VerifyInputError(Exception):
    """A delivery, header or secret that cannot be used: the message for stderr, which holds
    nothing of the input's content."""


@dataclass(frozen=True)
class Delivery:
    """A delivery as received: its headers (names lower-cased) and its exact body."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Keys:
    """The secrets to try, and how each is named in what the command says."""

    keys: tuple[SigningKey, ...]
    names: tuple[str, ...]


def verify_delivery(args: argparse.Namespace) -> int:
    try:
        keys = _keys(args, os.environ)
        if keys is None:
            return EXIT_CONFIG
        delivery = _delivery(args)
    except VerifyInputError as exc:
        print(f"neu-gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    problem = _unsignable_id(delivery)
    if problem:
        print(f"neu-gateway: not verified: {problem}", file=sys.stderr)
        return EXIT_INVALID
    now_s = SystemClock().now_ms() / 1000
    verdict = verify(keys.keys, delivery.headers, delivery.body, now_s, args.tolerance_s)
    signed_by, timestamp = verdict.signed_by, verdict.timestamp
    if verdict.accepted and signed_by is not None and timestamp is not None:
        print(
            f"verified: webhook-id {_shown(delivery.headers[ID_HEADER])}, signed with "
            f"{_signer(signed_by, keys)}, timestamp {_when(timestamp, now_s)}"
        )
        if args.tolerance_s is None and abs(now_s - timestamp) > TOLERANCE_S:
            print(
                f"  a receiver would refuse it now: it allows {TOLERANCE_S} s between the "
                "timestamp and its clock (--tolerance-s N checks that too)"
            )
        return EXIT_OK
    print(f"neu-gateway: not verified: {verdict.problem}", file=sys.stderr)
    for line in _refused(verdict, keys, delivery, now_s):
        print(f"  {line}", file=sys.stderr)
    return EXIT_INVALID


def _refused(verdict: Verdict, keys: Keys, delivery: Delivery, now_s: float) -> list[str]:
    """What more there is to say of a refusal, a line each."""
    if any(not delivery.headers.get(name) for name in SIGNED_HEADERS):
        names = sorted(delivery.headers)
        more = f" and {len(names) - _LISTED_HEADERS} more" if len(names) > _LISTED_HEADERS else ""
        return [f"headers found: {', '.join(names[:_LISTED_HEADERS]) or 'none'}{more}"]
    if verdict.timestamp is None:
        return []
    count = len(delivery.headers[SIGNATURE_HEADER].split(" "))
    lines = [
        f"webhook-id {_shown(delivery.headers[ID_HEADER])}, timestamp "
        f"{_when(verdict.timestamp, now_s)}, body {len(delivery.body)} bytes, {count} "
        f"signature{'s' if count > 1 else ''}"
    ]
    if verdict.signed_by is not None:
        return [*lines, f"the signature matches: signed with {_signer(verdict.signed_by, keys)}"]
    lines.append(f"tried: {', '.join(keys.names)}")
    hint = _line_end_hint(keys, delivery, now_s)
    return [*lines, hint] if hint else lines


def _signer(index: int, keys: Keys) -> str:
    return f"{keys.names[index]} ({index + 1} of {len(keys.keys)})"


# --- the secrets ------------------------------------------------------------------------------


def _keys(args: argparse.Namespace, environ: Mapping[str, str]) -> Keys | None:
    """The keys to try (raises VerifyInputError); None once load_or_report said why not."""
    if args.config is not None and args.app is None:
        raise VerifyInputError("-c names the config whose --app secrets to use: give --app NAME")
    if args.secret_file is not None:
        return Keys((_from_file(args.secret_file),), ("--secret-file's secret",))
    if args.secret_env is not None:
        return Keys((_from_environment(args.secret_env, environ),), ("--secret-env's secret",))
    return _from_config(args.config or DEFAULT_CONFIG_PATH, args.app)


def _from_file(path: Path) -> SigningKey:
    flag = f"--secret-file {path}"
    try:
        text = read_credential_file(path)
    except CredentialFileError as exc:
        raise VerifyInputError(f"{flag}: cannot read it ({exc})") from None
    if not text:
        raise VerifyInputError(f"{flag}: the file is empty")
    return _key(flag, text)


def _from_environment(name: str, environ: Mapping[str, str]) -> SigningKey:
    flag = f"--secret-env {name}"
    text = environ.get(name)
    if text is None:
        raise VerifyInputError(f"{flag}: environment variable {name} is not set")
    if not text:
        raise VerifyInputError(f"{flag}: environment variable {name} is empty")
    return _key(flag, text)


def _from_config(path: Path, name: str) -> Keys | None:
    """The app's signing secrets, current first, each named by its key in the config."""
    config = load_or_report(path)
    if config is None:
        return None
    app = config.apps.get(name)
    if app is None:
        raise VerifyInputError(
            f"--app {name}: no such app in {path} (its apps: {', '.join(config.apps)})"
        )
    where = f"apps.{name}.callbacks"
    if not app.signing_secrets:
        raise VerifyInputError(
            f"--app {name}: {where} has no signing secret (signing_secret_file, _env or "
            "signing_secret): its deliveries go unsigned"
        )
    given = app.callbacks
    current = _source(given.signing_secret_file, given.signing_secret_env)
    previous = _source(given.signing_secret_previous_file, given.signing_secret_previous_env)
    names = (f"{where}.signing_secret{current}", f"{where}.signing_secret_previous{previous}")
    keys = tuple(_key(names[n], secret.reveal()) for n, secret in enumerate(app.signing_secrets))
    return Keys(keys, names[: len(keys)])


def _source(file: Path | None, env: str | None) -> str:
    return "_file" if file is not None else "_env" if env is not None else ""


def _key(flag: str, text: str) -> SigningKey:
    try:
        return signing_key(text)
    except SigningSecretError as exc:
        raise VerifyInputError(f"{flag}: not a usable signing secret: {exc}") from None


# --- the delivery -----------------------------------------------------------------------------


def _delivery(args: argparse.Namespace) -> Delivery:
    if args.body is None:
        if args.header:
            raise VerifyInputError("-H goes with --body: a DELIVERY file holds its own headers")
        if args.delivery is None:
            raise VerifyInputError(
                "give the DELIVERY as received (a file, or - for stdin), or --body FILE and "
                "its headers with -H"
            )
        return parse_delivery(read_bounded(args.delivery))
    if args.delivery is not None:
        raise VerifyInputError("give either DELIVERY or --body FILE with -H, not both")
    headers: dict[str, str] = {}
    for number, line in enumerate(args.header or (), start=1):
        _add_header(headers, line, f"-H #{number}")
    return Delivery(headers, read_bounded(args.body))


def _stdin() -> BinaryIO:
    # None when the process started with its descriptor 0 closed.
    if sys.stdin is None:
        raise VerifyInputError("stdin is closed: - has nothing to read")
    return sys.stdin.buffer


def read_bounded(name: str) -> bytes:
    """The content of the file `name` (- for stdin), refused beyond MAX_DELIVERY_BYTES before
    it is read whole (raises VerifyInputError)."""
    if name == "-":
        try:
            return _read_stream(_stdin().read, "stdin")
        except OSError as exc:
            raise VerifyInputError(f"cannot read stdin ({exc.strerror})") from None
    try:
        # Non-blocking: opening a FIFO returns at once, to be refused below by its type.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise VerifyInputError(f"cannot read {name} ({exc.strerror})") from None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise VerifyInputError(
                f"{name} is {_kind(found.st_mode)}, not a regular file: for a pipe, give - "
                f"and the pipe on stdin"
            )
        if found.st_size > MAX_DELIVERY_BYTES:
            raise VerifyInputError(_too_large(name))
        # In one read as a rule: pieces joined would hold the content twice. (Not by the
        # byte where the size says 0: a file of /proc.)
        chunk_bytes = max(found.st_size + 1, _CHUNK_BYTES)
        return _read_stream(lambda size: os.read(fd, size), name, chunk_bytes)
    except OSError as exc:
        raise VerifyInputError(f"cannot read {name} ({exc.strerror})") from None
    finally:
        os.close(fd)


def _read_stream(read: Callable[[int], bytes], name: str, chunk_bytes: int = _CHUNK_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_DELIVERY_BYTES:
        # A short read is not the end (pipes and FUSE give them); only an empty one is.
        chunk = read(min(chunk_bytes, MAX_DELIVERY_BYTES + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise VerifyInputError(_too_large(name))


def _too_large(name: str) -> str:
    return (
        f"{name} holds more than {MAX_DELIVERY_BYTES // (1024 * 1024)} MiB: a delivery is a "
        "trade's detail, far smaller (is it the right file?)"
    )


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a socket")


def parse_delivery(data: bytes) -> Delivery:
    """The headers and body of a delivery as received (raises VerifyInputError)."""
    head_end, body_start = _blank_line(data)
    headers: dict[str, str] = {}
    lines = data[:head_end].split(b"\n")[:-1]
    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix(b"\r").decode("utf-8", "surrogateescape")
        where = f"line {number}"
        if number == 1 and _REQUEST_LINE.fullmatch(line):
            continue
        if line[:1] in (" ", "\t"):
            raise VerifyInputError(
                f"{where} starts with white space, continuing the line above (obsolete line "
                "folding): join it to that line"
            )
        _add_header(headers, line, where)
    return Delivery(headers, data[body_start:])


def _blank_line(data: bytes) -> tuple[int, int]:
    """Where the head ends and the body starts: at the first empty line, LF or CRLF."""
    window = data[: MAX_HEAD_BYTES + 3]
    for empty in (b"\n", b"\r\n"):
        if window.startswith(empty):
            return 0, len(empty)
    found = [
        (at + 1, at + len(ending))
        for ending in (b"\n\n", b"\n\r\n")
        if (at := window.find(ending)) >= 0
    ]
    if found and min(found)[0] <= MAX_HEAD_BYTES:
        return min(found)
    if len(data) > MAX_HEAD_BYTES:
        raise VerifyInputError(
            f"no empty line within the first {MAX_HEAD_BYTES // 1024} KiB: a delivery is its "
            "header lines, an empty line, then the body (if the file holds the body alone, "
            "give it with --body and the headers with -H)"
        )
    raise VerifyInputError(
        "no empty line after the headers: a delivery is its header lines, an empty line, then "
        "the body (if the file holds the body alone, give it with --body and the headers with -H)"
    )


def _add_header(headers: dict[str, str], line: str, where: str) -> None:
    name, colon, value = line.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        raise VerifyInputError(f"{where} is not a header line (Name: value)")
    if control := NOT_IN_A_HEADER_VALUE.search(value):
        raise VerifyInputError(
            f"{where}: the value of {name} holds a control character ({ord(control[0]):#04x})"
        )
    lowered = name.lower()
    if lowered in SIGNED_HEADERS and lowered in headers:
        raise VerifyInputError(f"{where}: a second {lowered} header; a delivery carries one")
    value = value.strip(" \t")
    # RFC 9110 5.3: repeated fields are one, their values joined by commas.
    headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value


# --- what is said -----------------------------------------------------------------------------


def _unsignable_id(delivery: Delivery) -> str:
    """Why no signature can match the webhook-id ("" when one may): the sender signs its UTF-8
    text, and bytes that are not UTF-8 have none."""
    try:
        delivery.headers.get(ID_HEADER, "").encode()
    except UnicodeEncodeError:
        return f"{ID_HEADER} holds bytes that are not UTF-8 text, which no sender signs"
    return ""


def _line_end_hint(keys: Keys, delivery: Delivery, now_s: float) -> str:
    """What would verify had the body kept its line ends: the commonest harm to a saved
    delivery is an editor's (or a copy's) rewrite of them."""
    body = delivery.body
    if len(body) > _HINT_MAX_BYTES:
        return ""
    variants: list[tuple[bytes, str]] = []
    if body.endswith(b"\n"):
        variants.append((body[: -2 if body.endswith(b"\r\n") else -1], "without its last line end"))
    if b"\r\n" in body:
        variants.append((body.replace(b"\r\n", b"\n"), "with LF line ends for its CRLF ones"))
    elif b"\n" in body:
        variants.append((body.replace(b"\n", b"\r\n"), "with CRLF line ends for its LF ones"))
    for changed, how in variants:
        if verify(keys.keys, delivery.headers, changed, now_s, None).accepted:
            return (
                f"the body would verify {how}: the saved body's line ends were changed (an "
                "editor, a copy and paste, git's autocrlf?); save it byte for byte"
            )
    return ""


def _when(timestamp: int, now_s: float) -> str:
    try:
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        date = f"{timestamp} (past any calendar date)"
    seconds = int(abs(now_s - timestamp))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    if days:
        age = f"{days}d {hours}h"
    elif hours:
        age = f"{hours}h {minutes}m"
    elif minutes:
        age = f"{minutes}m {rest}s"
    else:
        age = f"{rest}s"
    return f"{date} ({age} {'ago' if timestamp <= now_s else 'ahead of this clock'})"


def _shown(text: str) -> str:
    """A value of the input as it may be printed: escapes for what a terminal would act on
    (or cannot encode), and cut short."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: _SHOWN_CHARS + 1])
    return shown if len(shown) <= _SHOWN_CHARS else f"{shown[:_SHOWN_CHARS]}..."


def nonnegative_seconds(text: str) -> float:
    """--tolerance-s: seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return seconds
