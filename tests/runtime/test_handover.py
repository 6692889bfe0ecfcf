"""The config in force, handed from a supervisor to a worker through a real pipe."""

from __future__ import annotations

import os

from gateway.config.load import from_mapping
from gateway.config.model import Config
from gateway.runtime import handover

TOKEN = "a-caller-token-0123456789"


def config(secret: str) -> Config:
    return from_mapping(
        {
            "apps": {"demo": {"appid": "demo-appid", "secret_env": "S", "upstream": "sandbox"}},
            "callers": {
                "svc": {"token_env": "T", "apps": ["demo"], "allow": ["POST /neuopenapi/*"]}
            },
            "trusted_networks": ["10.0.0.0/8"],
        },
        {"S": secret, "T": TOKEN},
    )


async def test_a_worker_gets_the_config_with_its_secrets_then_each_reload_in_order() -> None:
    read_fd, write_fd = os.pipe()
    sender = await handover.Sender.open(write_fd)
    sender.send(config("secret-at-the-start"))
    sender.send(handover.Refused(("apps.demo.secret_env: environment variable S is not set",)))
    sender.send(config("secret-reloaded"))
    sender.close()

    started = handover.receive_start(read_fd)
    assert started is not None
    assert started.apps["demo"].secret.reveal() == "secret-at-the-start"
    assert started.callers["svc"].token.matches(TOKEN)
    assert [str(network) for network in started.trusted_networks] == ["10.0.0.0/8"]
    taken: list[handover.Message] = []

    async def take(message: handover.Message) -> None:
        taken.append(message)

    # Returns as the supervisor's end closes: that is how a worker learns it is gone.
    await handover.follow(read_fd, take)
    refused, reloaded = taken
    assert refused == handover.Refused(("apps.demo.secret_env: environment variable S is not set",))
    assert isinstance(reloaded, Config)
    assert reloaded.apps["demo"].secret.reveal() == "secret-reloaded"


async def test_a_supervisor_gone_before_it_said_it_all_hands_over_nothing() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, handover.encode(config("s3cret-value"))[:10])
    os.close(write_fd)
    try:
        assert handover.receive_start(read_fd) is None
    finally:
        os.close(read_fd)
