"""How a signed request is checked on arrival: each refusal's status and exact message, and the
edges of the timestamp rules, always with a request signed afresh for the values it carries
(a request left unsigned would be refused for its sign, whatever its timestamp)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.core.verification import MAX_SKEW_MS, Rejected, check_signed_request
from tests.support.platform_double import reference_sign

NOW = 1_700_000_000_000
SECRETS = {"app": "s3cret"}
SIGN_ERROR = "sign error: the sign does not match the parameters"


def signed(**params: str) -> dict[str, str]:
    """A request from `app`, stamped NOW unless told otherwise, signed for what it holds."""
    stamped = {"appid": "app", "timestamp": str(NOW), **params}
    return {**stamped, "sign": reference_sign(stamped, SECRETS["app"])}


def refusal(params: dict[str, str], explain: bool = False) -> Rejected:
    with pytest.raises(Rejected) as caught:
        check_signed_request(params, SECRETS, NOW, explain)
    # The message is the exception's own text too, as the sandbox and callbacks log it.
    assert str(caught.value) == caught.value.msg
    return caught.value


def late_message(skew_ms: int) -> str:
    """The refusal of a timestamp `skew_ms` away from NOW, written out in full."""
    side = "ahead of" if skew_ms > 0 else "behind"
    return (
        f"timestamp expired or invalid: it is {round(abs(skew_ms) / 1000)} s {side} the "
        "platform's clock; it must be within 300 s (milliseconds, not seconds)"
    )


def test_a_signed_request_on_time_gives_its_appid() -> None:
    assert check_signed_request(signed(x="1"), SECRETS, NOW, explain=False) == "app"


def test_the_window_is_five_minutes() -> None:
    assert MAX_SKEW_MS == 300_000


@given(st.integers(-MAX_SKEW_MS, MAX_SKEW_MS))
@example(MAX_SKEW_MS)
@example(-MAX_SKEW_MS)
def test_a_timestamp_within_five_minutes_either_way_is_accepted(skew_ms: int) -> None:
    request = signed(timestamp=str(NOW + skew_ms))
    assert check_signed_request(request, SECRETS, NOW, explain=False) == "app"


@given(
    st.integers(MAX_SKEW_MS + 1, 10**13) | st.integers(-NOW, -MAX_SKEW_MS - 1),
)
@example(MAX_SKEW_MS + 1)
@example(-MAX_SKEW_MS - 1)
@example(-NOW)
def test_a_timestamp_further_off_is_refused_as_late_not_as_badly_signed(skew_ms: int) -> None:
    rejected = refusal(signed(timestamp=str(NOW + skew_ms)))
    assert (rejected.status, rejected.msg) == (401, late_message(skew_ms))


@pytest.mark.parametrize(
    ("skew_ms", "message"),
    [
        pytest.param(
            300_001,
            "timestamp expired or invalid: it is 300 s ahead of the platform's clock; "
            "it must be within 300 s (milliseconds, not seconds)",
            id="a millisecond too far ahead",
        ),
        pytest.param(
            -300_001,
            "timestamp expired or invalid: it is 300 s behind the platform's clock; "
            "it must be within 300 s (milliseconds, not seconds)",
            id="a millisecond too far behind",
        ),
        pytest.param(
            -NOW + 1_700_000_000,
            "timestamp expired or invalid: it is 1698300000 s behind the platform's clock; "
            "it must be within 300 s (milliseconds, not seconds)",
            id="seconds sent where milliseconds belong",
        ),
    ],
)
def test_the_late_message_says_by_how_much_and_which_way(skew_ms: int, message: str) -> None:
    rejected = refusal(signed(timestamp=str(NOW + skew_ms)))
    assert (rejected.status, rejected.msg) == (401, message)


def test_nineteen_digits_pass_the_format_check_and_twenty_do_not() -> None:
    nineteen = refusal(signed(timestamp="1" * 19))
    assert nineteen.status == 401
    assert nineteen.msg.startswith("timestamp expired or invalid: it is ")
    twenty = refusal(signed(timestamp="1" * 20))
    assert (twenty.status, twenty.msg) == (400, "timestamp must be a whole number of milliseconds")


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param("\uff11\uff17\uff10\uff10", id="full-width digits"),
        pytest.param("\u0661\u0667", id="Arabic-Indic digits"),
        pytest.param("1700000000000.0", id="a decimal point"),
        pytest.param("-1", id="a sign"),
        pytest.param(" 1700000000000", id="a space"),
    ],
)
def test_a_timestamp_that_is_not_ascii_digits_is_refused(timestamp: str) -> None:
    rejected = refusal(signed(timestamp=timestamp))
    assert (rejected.status, rejected.msg) == (
        400,
        "timestamp must be a whole number of milliseconds",
    )


def test_an_unknown_appid_is_named_up_to_64_characters() -> None:
    rejected = refusal({**signed(), "appid": "a" * 64 + "b" * 36})
    assert (rejected.status, rejected.msg) == (401, f"unknown appid {'a' * 64!r}")
    short = refusal({**signed(), "appid": "nope"})
    assert (short.status, short.msg) == (401, "unknown appid 'nope'")


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        pytest.param(
            {**signed(), "secret": "s3cret"},
            400,
            "a 'secret' parameter was sent: the app secret must never travel",
            id="a secret sent along, even the right one",
        ),
        pytest.param(
            {"secret": "x"},
            400,
            "a 'secret' parameter was sent: the app secret must never travel",
            id="a secret is refused before anything else is looked at",
        ),
        pytest.param({"timestamp": str(NOW)}, 400, "appid is required", id="no appid"),
        pytest.param({**signed(), "appid": ""}, 400, "appid is required", id="an empty appid"),
        pytest.param(
            {"appid": "app"},
            400,
            "timestamp is required (milliseconds since the Unix epoch)",
            id="no timestamp",
        ),
        pytest.param(
            {**signed(), "timestamp": ""},
            400,
            "timestamp is required (milliseconds since the Unix epoch)",
            id="an empty timestamp",
        ),
        pytest.param(
            {"appid": "app", "timestamp": str(NOW)}, 401, "sign is required", id="no sign"
        ),
        pytest.param({**signed(), "sign": ""}, 401, "sign is required", id="an empty sign"),
        pytest.param({**signed(), "x": "1"}, 401, SIGN_ERROR, id="a parameter added after"),
        pytest.param(
            {**signed(), "sign": "\ud800"}, 401, SIGN_ERROR, id="a sign with an unpaired surrogate"
        ),
    ],
)
def test_each_refusal_has_its_status_and_message(
    params: dict[str, str], status: int, message: str
) -> None:
    rejected = refusal(params)
    assert (rejected.status, rejected.msg) == (status, message)


def test_explain_adds_the_string_the_platform_signed_with_the_secret_masked() -> None:
    request = {**signed(x="1"), "sign": "0" * 64}
    rejected = refusal(request, explain=True)
    assert rejected.status == 401
    assert (
        rejected.msg
        == f"{SIGN_ERROR}; the platform signed: appid=appsecret=******timestamp={NOW}x=1"
    )
    assert "s3cret" not in rejected.msg


def test_without_explain_the_sign_error_says_nothing_more() -> None:
    assert refusal({**signed(x="1"), "sign": "0" * 64}).msg == SIGN_ERROR


def test_the_sign_is_checked_with_the_secret_of_the_appid_sent() -> None:
    secrets = {"app": "s3cret", "other": "different"}
    request = signed(x="1")
    assert check_signed_request(request, secrets, NOW, explain=False) == "app"
    with pytest.raises(Rejected) as caught:
        check_signed_request({**request, "appid": "other"}, secrets, NOW, explain=False)
    assert caught.value.msg == SIGN_ERROR


def test_rejected_carries_its_status_and_message() -> None:
    rejected = Rejected(403, "no")
    assert (rejected.status, rejected.msg, str(rejected)) == (403, "no", "no")


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=6), st.booleans())
def test_anything_unsigned_is_refused_never_an_unexpected_error(
    params: dict[str, str], explain: bool
) -> None:
    with pytest.raises(Rejected) as caught:
        check_signed_request(params, {"a": "s"}, NOW, explain)
    assert caught.value.status in (400, 401)
