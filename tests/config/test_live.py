from __future__ import annotations

from gateway.config.live import LiveConfig
from gateway.config.load import from_mapping
from tests.config.documents import app


def test_a_reload_keeps_what_only_a_restart_can_change() -> None:
    running = from_mapping({"apps": {"demo": app()}}, {"S": "old"})
    live = LiveConfig(running, loaded_at=1.0)
    document = {
        "apps": {"demo": app()},
        "listen": {"port": 9999},
        "cache": {"max_entries": 5},
        "limits": {"max_params": 7, "max_connections": 3},
        "shutdown": {"drain_s": 1},
    }
    pinned = live.swap(from_mapping(document, {"S": "new"}), loaded_at=2.0)
    assert pinned == ["listen", "cache", "limits.max_connections"]
    current = live.current
    assert current.apps["demo"].secret.reveal() == "new"
    assert current.limits.max_params == 7
    assert current.shutdown.drain_s == 1
    # Kept as they run: the listener, the cache, the connection guard.
    assert current.listen.port == 8080
    assert current.cache.max_entries == running.cache.max_entries
    assert current.limits.max_connections == running.limits.max_connections
    assert live.loaded_at == 2.0
