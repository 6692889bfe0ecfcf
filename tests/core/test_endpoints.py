"""Each endpoint's extras are data beside its parameter rules."""

from __future__ import annotations

from gateway.core.endpoints import ENDPOINTS, Extra
from gateway.core.platform import TRADE_DETAIL_PATH


def test_the_extras_are_where_the_doc_puts_the_behaviour() -> None:
    extras = {path: endpoint.extra for path, endpoint in ENDPOINTS.items() if endpoint.extra}
    assert extras == {
        "/neuopenapi/oauth/mini/accessToken": Extra.EXCHANGE,
        "/neuopenapi/oauth/mini/user/info": Extra.USER_BY_OPEN_ID,
        TRADE_DETAIL_PATH: Extra.TRADE_WAIT,
    }


def test_open_id_may_stand_in_for_the_access_token_only_at_user_info() -> None:
    stand_ins = {path: e.stand_ins for path, e in ENDPOINTS.items() if e.stand_ins}
    assert stand_ins == {"/neuopenapi/oauth/mini/user/info": (("openId", "accessToken"),)}
