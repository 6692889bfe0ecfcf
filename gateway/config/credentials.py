"""A secret or token as the config names it: from an environment variable, a file (read
within bounds: credential_files.py) or, for the sandbox's public demo values, written inline;
and an app's delivery signing secrets, checked as Standard Webhooks reads them.

Read at load (load.py) and again by the watch of the files (runtime/secret_files.py). A problem
names the key and why, never the value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from gateway.config.credential_files import CredentialFileError, read_credential_file
from gateway.config.schema import AppCallbacksConfig
from gateway.core.secrets import DEMO_SECRET, DEMO_SIGNING_SECRET, Secret
from gateway.core.webhooks import SigningSecretError, signing_key

log = logging.getLogger("neu_gateway.config")
# The inline secrets already warned of, by key: a process warns of each once, however many
# times it reads the file (each reload, a command's several loads).
INLINE_WARNED: set[str] = set()


def read_credential(
    where: str,
    what: str,
    env_name: str | None,
    file_path: Path | None,
    inline: str | None,
    environ: Mapping[str, str],
    problems: list[str],
) -> Secret | None:
    """A secret or token from an environment variable, a file, or (demo only) inline."""
    if env_name is not None:
        value = environ.get(env_name)
        if value is None:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is not set")
            return None
        if not value:
            problems.append(f"{where}.{what}_env: environment variable {env_name} is empty")
            return None
        return Secret(value)
    if file_path is not None:
        try:
            value = read_credential_file(file_path)
        except CredentialFileError as exc:
            problems.append(f"{where}.{what}_file: cannot read {file_path} ({exc})")
            return None
        if not value:
            problems.append(f"{where}.{what}_file: {file_path} is empty")
            return None
        return Secret(value)
    if inline is None:
        # The schema requires one of the three; a caller that skipped it still gets a problem.
        problems.append(f"{where}: one of {what}_env, {what}_file or {what} is required")
        return None
    if not inline:
        problems.append(f"{where}.{what}: is empty")
        return None
    key = f"{where}.{what}"
    # The public demo secret protects nothing: a warning at every start of the demo is noise.
    if key not in INLINE_WARNED and inline not in (DEMO_SECRET, DEMO_SIGNING_SECRET):
        INLINE_WARNED.add(key)
        log.warning(
            "%s: the secret is written in the config file; outside the sandbox demo use "
            "%s_file (or %s_env)",
            key,
            what,
            what,
        )
    return Secret(inline)


# Keys' names (`what` of a CredentialSource), not secrets.
SIGNING_SECRET = "callbacks.signing_secret"  # noqa: S105
PREVIOUS_SIGNING_SECRET = "callbacks.signing_secret_previous"  # noqa: S105


def signing_secrets(
    where: str, callbacks: AppCallbacksConfig, environ: Mapping[str, str], problems: list[str]
) -> tuple[Secret, ...]:
    """The app's delivery signing secrets, current first, each checked as Standard Webhooks
    reads it (a problem names the key and why, never the value)."""
    sources = (
        (
            SIGNING_SECRET,
            callbacks.signing_secret_env,
            callbacks.signing_secret_file,
            callbacks.signing_secret,
        ),
        (
            PREVIOUS_SIGNING_SECRET,
            callbacks.signing_secret_previous_env,
            callbacks.signing_secret_previous_file,
            None,
        ),
    )
    found: list[Secret] = []
    for what, env, file, inline in sources:
        if env is None and file is None and inline is None:
            continue
        secret = read_credential(where, what, env, file, inline, environ, problems)
        if secret is None:
            continue
        reason = signing_secret_problem(secret)
        if reason:
            suffix = "_env" if env is not None else "_file" if file is not None else ""
            problems.append(f"{where}.{what}{suffix}: {reason}")
            continue
        found.append(secret)
    if len(found) == 2 and found[0].matches(found[1].reveal()):
        # Step 1 of a rotation half done: the service is told nothing it can move to.
        log.warning(
            "%s.callbacks: the previous signing secret is the one in force; a rotation gives "
            "the new secret in signing_secret_file and the old one as the previous",
            where,
        )
    return tuple(found)


def signing_secret_problem(secret: Secret) -> str:
    """Why a delivery signing secret cannot be used ("" if it can)."""
    try:
        signing_key(secret.reveal())
    except SigningSecretError as exc:
        return str(exc)
    return ""
