"""The apps `neu-gateway sandbox` registers, and their secrets, from its arguments:

    --app APPID=SECRET          the secret on the command line: shows in ps and the shell's
                                history, so warned of, but for the public demo secret
    --app-secret-file APPID=PATH   the secret in a file (surrounding whitespace dropped)
    --app-secret-env APPID=VAR     the secret in an environment variable

as a config's `secret`, `secret_file` and `secret_env` are read. A refusal names the flag, the
appid and where the secret was looked for; never a value that may be the secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import logs
from gateway.config.credential_files import CredentialFileError, read_credential_file
from gateway.core.secrets import DEMO_APPID, DEMO_SECRET

log = logs.logger("neu_gateway")


class SandboxAppsError(Exception):
    """An app argument that cannot be used; the message is for stderr, free of secrets."""


@dataclass(frozen=True)
class AppArguments:
    """The three flags' values, each as argparse collected them (None when not given)."""

    inline: Sequence[str] | None = None
    files: Sequence[str] | None = None
    env_vars: Sequence[str] | None = None


def sandbox_secrets(given: AppArguments, environ: Mapping[str, str]) -> dict[str, str]:
    """appid -> secret for every app given, or the demo app when none is; warns of secrets
    given inline. Raises SandboxAppsError for the first argument that cannot be used."""
    found: dict[str, tuple[str, str]] = {}  # appid -> (flag, secret)

    def add(flag: str, appid: str, secret: str) -> None:
        if appid in found:
            earlier = found[appid][0]
            raise SandboxAppsError(
                f"{flag}: app {appid} is given twice ({earlier}, {flag}); give each app once"
            )
        found[appid] = (flag, secret)

    for item in given.inline or ():
        appid, secret = _inline(item)
        add("--app", appid, secret)
    for item in given.files or ():
        appid, path = _pair("--app-secret-file", item, "PATH")
        add("--app-secret-file", appid, _from_file(appid, Path(path)))
    for item in given.env_vars or ():
        appid, name = _pair("--app-secret-env", item, "VAR")
        add("--app-secret-env", appid, _from_environment(appid, name, environ))
    if not found:
        return {DEMO_APPID: DEMO_SECRET}
    shown = sorted(
        appid
        for appid, (flag, secret) in found.items()
        if flag == "--app" and secret != DEMO_SECRET
    )
    if shown:
        log.warning(
            "--app APPID=SECRET puts the secret of %s in the process list (ps) and the "
            "shell's history: give it with --app-secret-file APPID=PATH or "
            "--app-secret-env APPID=VAR",
            ", ".join(shown),
        )
    return {appid: secret for appid, (_, secret) in found.items()}


def _inline(item: str) -> tuple[str, str]:
    # Not echoed: without its `=`, or its appid, the whole value may be the secret.
    appid, eq, secret = item.partition("=")
    if not eq:
        raise SandboxAppsError(
            "--app takes APPID=SECRET; a value has no '=' (not shown: it may be the secret)"
        )
    if not appid:
        raise SandboxAppsError(
            "--app takes APPID=SECRET; a value has no appid before its '=' (not shown: it "
            "may be the secret)"
        )
    if not secret:
        raise SandboxAppsError(f"--app {appid}=: the secret is empty")
    return appid, secret


def _pair(flag: str, item: str, what: str) -> tuple[str, str]:
    # A path or a variable's name, not a secret: safe to show.
    appid, eq, where = item.partition("=")
    if not eq or not appid or not where:
        raise SandboxAppsError(f"{flag} {item!r} is not APPID={what}")
    return appid, where


def _from_file(appid: str, path: Path) -> str:
    flag = f"--app-secret-file {appid}={path}"
    try:
        secret = read_credential_file(path)
    except CredentialFileError as exc:
        raise SandboxAppsError(f"{flag}: cannot read {path} ({exc})") from None
    if not secret:
        raise SandboxAppsError(f"{flag}: {path} is empty")
    return secret


def _from_environment(appid: str, name: str, environ: Mapping[str, str]) -> str:
    flag = f"--app-secret-env {appid}={name}"
    secret = environ.get(name)
    if secret is None:
        raise SandboxAppsError(f"{flag}: environment variable {name} is not set")
    if not secret:
        raise SandboxAppsError(f"{flag}: environment variable {name} is empty")
    return secret
