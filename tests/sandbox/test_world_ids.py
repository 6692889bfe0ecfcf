"""The identifiers derived from a user and an app: stable, per app or across apps."""

from __future__ import annotations

import hashlib

from gateway.sandbox.world.ids import digest, open_id, union_id


def test_a_digest_is_32_hex_characters_of_the_parts_sha_256() -> None:
    expected = hashlib.sha256(b"openId:app:alice").hexdigest()[:32]
    assert digest("openId", "app", "alice") == expected
    assert digest("openId", "app", "alice") == open_id("app", "alice")


def test_an_open_id_is_per_user_and_app_and_the_same_every_time() -> None:
    assert open_id("app", "alice") == open_id("app", "alice")
    assert open_id("app", "alice") != open_id("other-app", "alice")
    assert open_id("app", "alice") != open_id("app", "bob")


def test_a_union_id_is_per_user_across_apps() -> None:
    assert union_id("alice") == union_id("alice")
    assert union_id("alice") != union_id("bob")
    assert union_id("alice") not in (open_id("app", "alice"), open_id("other-app", "alice"))
