"""A reload: the config file read anew (every secret and token it names too) and put in force
whole, or refused with one log line while the running config stays.

One process reloads at its own SIGHUP (reload_config). With `workers: N` the supervisor reads
the file (read_for_workers) and hands every worker the result through its pipe
(runtime/handover.py), which each takes as one process would (follow_supervisor): a worker
never reads the file. What only a restart can change (the ports, the Redis, the limits bound
at the start) keeps its running value, and the log names it.

A secret or token file that changes is put in force the same way, without a signal
(runtime/secret_files.py watches them: take_rotation, rotate_for_workers). One read from an
environment variable cannot be: a reload warns of each (warn_of_environment).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from gateway import logs
from gateway.callbacks.delivery import Destination
from gateway.config.errors import ConfigError
from gateway.config.live import LiveConfig, kept_from_the_start
from gateway.config.load import load
from gateway.config.model import Config
from gateway.egress.keys import BASE_URLS, UPSTREAM
from gateway.http.keys import CLOCK, CONFIG, LIVE_CONFIG, METRICS
from gateway.runtime import handover
from gateway.runtime.keys import DELIVER_TO, EMBEDDED_SANDBOX
from gateway.runtime.resources import sandbox_signing_secrets, tls_setup_problems
from gateway.runtime.secret_files import Change, SecretFiles, rotated
from gateway.sandbox.server import sandbox_appids, set_secret, set_signing_secrets

log = logs.logger("neu_gateway")

# What this process makes of the file's config, at the start and at each reload (a worker's
# ports, the command line's --workers), so that only real changes count as changes.
AsRun = Callable[[Config], Config]


def as_is(new: Config) -> Config:
    return new


def apply_config(app: web.Application, new: Config) -> list[str]:
    """Puts a reloaded config in force; returns the keys only a restart can change.

    Raises ConfigError, leaving the running config as it was, for a change that cannot be
    made while running.
    """
    embedded = app[EMBEDDED_SANDBOX]
    placement = app[CONFIG].placement
    if placement is not None:
        new = replace(new, placement=placement)
    shared_sandbox = placement.sandbox_url if placement is not None else None
    if shared_sandbox is None:
        # (A worker's supervisor has checked its shared sandbox against the new config.)
        problems = sandbox_problems(new, embedded[0][0] if embedded else None)
        if problems:
            raise ConfigError(problems)
    problems = tls_setup_problems(new)
    if problems:
        raise ConfigError(problems)
    upstream = app.get(UPSTREAM)
    if upstream is not None:
        upstream.renew_sessions()
    live = app[LIVE_CONFIG]
    before = live.current
    pinned = live.swap(new, time.time())
    current = live.current
    for name, entry in current.apps.items():
        if entry.uses_sandbox and shared_sandbox is not None:
            # The supervisor tells the sandbox it runs of new secrets.
            app[BASE_URLS][name] = shared_sandbox
        elif entry.uses_sandbox:
            app[BASE_URLS][name] = embedded[0][1]
        else:
            app[BASE_URLS][name] = entry.upstream
        app[DELIVER_TO][name] = Destination.of(entry)
    if embedded:
        tell_sandbox(embedded[0][0], before, current)
    deliver_to: dict[str, Destination] = app[DELIVER_TO]
    for gone in deliver_to.keys() - current.apps.keys():
        # Its pending deliveries wait, as for any app without deliver_to, until it is back.
        del deliver_to[gone]
        app[BASE_URLS].pop(gone, None)
    app[METRICS].config_loaded.set(live.loaded_at)
    return pinned


def sandbox_problems(new: Config, sandbox: web.Application | None) -> list[str]:
    """What a new config asks of the sandbox running (None: none runs) that only a restart
    can give."""
    if not new.sandbox_apps:
        return []
    if sandbox is None:
        names = ", ".join(entry.name for entry in new.sandbox_apps)
        return [f"apps ({names}): upstream sandbox needs a restart (no embedded sandbox runs)"]
    known = sandbox_appids(sandbox)
    unknown = [f"apps.{entry.name}" for entry in new.sandbox_apps if entry.appid not in known]
    if unknown:
        return [f"{', '.join(unknown)}: a new app on the embedded sandbox needs a restart"]
    return []


def tell_sandbox(sandbox: web.Application, before: Config, current: Config) -> None:
    """The emulated platform learns each secret that changed from `before` to `current`,
    keeping the old one a while, as the real one does; its stand-in service, the apps'
    signing secrets."""
    for entry in current.sandbox_apps:
        old = before.apps.get(entry.name)
        if old is None or not old.secret.matches(entry.secret.reveal()):
            set_secret(sandbox, entry.appid, entry.secret.reveal())
    set_signing_secrets(sandbox, sandbox_signing_secrets(current))


async def reload_config(app: web.Application, path: Path, as_run: AsRun = as_is) -> bool:
    """SIGHUP: the config at `path` in force, or the running one kept; True if swapped."""
    try:
        loaded = await asyncio.to_thread(load, path)
    except ConfigError as exc:
        return refused(app, path, exc.problems)
    except Exception as exc:
        return _failed(app, path, exc)
    warn_of_environment(loaded)
    return take_config(app, path, loaded, as_run)


def take_config(app: web.Application, path: Path, new: Config, as_run: AsRun) -> bool:
    """Puts a config read from `path` in force (see reload_config), or keeps the running one."""
    metrics = app[METRICS]
    try:
        new = as_run(new)
        # Before anything could log them.
        logs.REDACTION.add_secrets(new.credentials())
        pinned = apply_config(app, new)
    except ConfigError as exc:
        return refused(app, path, exc.problems)
    except Exception as exc:
        return _failed(app, path, exc)
    metrics.config_reloads.labels("ok").inc()
    if pinned:
        log.warning(
            "config reloaded from %s; changed but kept until a restart: %s",
            path,
            ", ".join(pinned),
        )
    else:
        log.info("config reloaded from %s", path)
    return True


def warn_of_environment(config: Config) -> None:
    """Each secret or token a reload could not renew, as it comes from the environment."""
    for line in kept_from_the_start(config):
        log.warning("%s", line)


def take_rotation(app: web.Application, changes: Sequence[Change]) -> None:
    """Puts the new values of changed secret and token files in force, as a reload that read
    them would: requests in flight keep the config they started with."""
    live = app[LIVE_CONFIG]
    new = rotated(live.current, changes)
    logs.REDACTION.add_secrets(new.credentials())
    try:
        apply_config(app, new)
    except ConfigError as exc:
        # What else the config names (its TLS files) cannot be used now: a reload would
        # refuse the same, so the config in force stays whole.
        log.error(
            "changed %s not taken, the running config stays: %s",
            ", ".join(change.source.key for change in changes),
            "; ".join(exc.problems),
        )
        return
    for change in changes:
        log.info(
            "%s: %s changed; the new %s is in force",
            change.source.key,
            change.source.file,
            change.source.what,
        )


def rotate_for_workers(
    live: LiveConfig, sandbox: web.Application | None, changes: Sequence[Change]
) -> handover.Rotated:
    """The supervisor's side of a changed file: its config in force (what a worker started
    again gets) and its sandbox take the new values; the workers are to be sent the result."""
    before = live.current
    new = rotated(before, changes)
    logs.REDACTION.add_secrets(new.credentials())
    live.swap(new, time.time())
    if sandbox is not None:
        tell_sandbox(sandbox, before, live.current)
    for change in changes:
        log.info(
            "%s: %s changed; handing the new %s to the workers",
            change.source.key,
            change.source.file,
            change.source.what,
        )
    return handover.Rotated(tuple(changes))


async def watch_secret_files(app: web.Application) -> AsyncIterator[None]:
    """The app's watch over its secret and token files (a cleanup context): none in a
    worker, whose supervisor watches them, or with secrets.watch_s 0."""
    config = app[CONFIG]
    if config.placement is not None or config.secrets.watch_s == 0:
        yield
        return
    watch = SecretFiles(
        app[LIVE_CONFIG],
        app[CLOCK],
        config.secrets.watch_s,
        lambda changes: take_rotation(app, changes),
    )
    task = asyncio.ensure_future(watch.run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def refused(app: web.Application, path: Path, problems: list[str]) -> bool:
    app[METRICS].config_reloads.labels("failed").inc()
    log.error("config reload refused, the running config stays: %s: %s", path, "; ".join(problems))
    return False


def _failed(app: web.Application, path: Path, exc: Exception) -> bool:
    app[METRICS].config_reloads.labels("failed").inc()
    # Named by its type only: the exception may quote the file, secrets and all.
    log.error("config reload failed, the running config stays: %s: %s", path, type(exc).__name__)
    return False


def in_turn(reload: Callable[[], Awaitable[object]]) -> Callable[[], None]:
    """A SIGHUP handler: one reload at a time, in the order the signals came, so the last file
    read wins. Call it with the loop running."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()
    one_at_a_time = asyncio.Lock()

    async def reload_in_turn() -> None:
        async with one_at_a_time:
            await reload()

    def start() -> None:
        task = loop.create_task(reload_in_turn())
        # Held until done: the loop keeps only a weak reference to a task.
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    return start


def sighup_to_a_worker() -> None:
    log.warning(
        "SIGHUP ignored: a worker takes its config from its supervisor (process %d), which "
        "reloads on a SIGHUP of its own",
        os.getppid(),
    )


async def follow_supervisor(app: web.Application, path: Path, fd: int, as_run: AsRun) -> None:
    """A worker takes each reload its supervisor hands over on `fd`, logging it as one
    process would; returns once the supervisor is gone."""

    async def take(message: handover.Message) -> None:
        if isinstance(message, handover.Refused):
            refused(app, path, list(message.problems))
        elif isinstance(message, handover.Rotated):
            take_rotation(app, message.changes)
        else:
            take_config(app, path, message, as_run)

    await handover.follow(fd, take)


async def read_for_workers(
    path: Path, as_run: AsRun, live: LiveConfig, sandbox: web.Application | None
) -> handover.Message:
    """The supervisor's reload: the file read anew and made the config in force `live`, or
    why not, for every worker to log as one process does. `sandbox`: the one it runs for the
    workers, if any, told of new secrets."""
    try:
        new = await asyncio.to_thread(_load_for_workers, path, as_run)
    except ConfigError as exc:
        return handover.Refused(tuple(exc.problems))
    except Exception as exc:
        # Named by its type only: the exception may quote the file, secrets and all.
        return handover.Refused((f"reading it failed ({type(exc).__name__})",))
    problems = sandbox_problems(new, sandbox)
    if problems:
        return handover.Refused(tuple(problems))
    # Before anything could log them.
    logs.REDACTION.add_secrets(new.credentials())
    before = live.current
    live.swap(new, time.time())
    if sandbox is not None:
        tell_sandbox(sandbox, before, live.current)
    # Once, here: every worker takes what the supervisor read.
    warn_of_environment(live.current)
    return new


def _load_for_workers(path: Path, as_run: AsRun) -> Config:
    new = as_run(load(path))
    # A worker would refuse these too: every worker must take what the supervisor takes.
    problems = tls_setup_problems(new)
    if problems:
        raise ConfigError(problems)
    return new
