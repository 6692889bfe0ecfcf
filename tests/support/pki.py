"""Certificates for tests of TLS: a CA of the test's own, made with openssl."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _signed(
    directory: Path, name: str, subject: str, extensions: str, ca: str = "ca"
) -> tuple[Path, Path]:
    key, csr, cert = f"{name}.key", f"{name}.csr", f"{name}.pem"
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", subject, cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", cert, "-days", "2", "-sha256",
             "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip
    return directory / cert, directory / key


def _ca(directory: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign", cwd=directory)  # fmt: skip
    return directory / f"{name}.pem"


def server_context(pki: Pki, require_client: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


def make_pki(directory: Path) -> Pki:
    """A CA of the test's own, a server certificate for platform.test and 127.0.0.1, a client
    certificate, and an unrelated CA."""
    ca = _ca(directory, "ca")
    server_cert, server_key = _signed(
        directory,
        "server",
        "/CN=platform.test",
        "subjectAltName=DNS:platform.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client_cert, client_key = _signed(
        directory, "client", "/CN=neu-gateway", "extendedKeyUsage=clientAuth\n"
    )
    return Pki(ca, server_cert, server_key, client_cert, client_key, _ca(directory, "other"))
