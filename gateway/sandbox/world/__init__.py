"""The emulated platform's state and rules, one aggregate a module behind the World facade:

    settings   how the platform behaves (lifetimes, retries, its clock)
    ids        openId, unionId and the other identifiers derived from a user and an app
    apps       the registered apps and their secrets, rotated
    users      the demo user, users made on the simulator page or seen logging in
    logins     one-time login codes and the accessTokens they are exchanged for
    trades     payment trades and their final statuses
    messages   notifications and activity cards on users' phones
    facade     World: the one door the server and its controls call

Every refusal is core.verification.Rejected: the platform's status and its msg.
"""

from gateway.sandbox.world.facade import World
from gateway.sandbox.world.ids import open_id, union_id
from gateway.sandbox.world.settings import Settings
from gateway.sandbox.world.trades import Trade, trade_view
from gateway.sandbox.world.users import DEMO_USER, Profile

__all__ = [
    "DEMO_USER",
    "Profile",
    "Settings",
    "Trade",
    "World",
    "open_id",
    "trade_view",
    "union_id",
]
