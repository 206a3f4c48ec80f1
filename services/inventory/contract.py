"""Inventory's contract: it announces assets and follows identity's users (owners)."""

from ontrackio.core.contract import Contract
from ontrackio.core.keys.reencrypt import EncryptedColumn
from ontrackio.inventory.v1 import events_pb2 as events

CONTRACT = Contract(
    service="inventory",
    publishes={"asset_created": (events.AssetCreated, 1)},
    subscribes={
        "handle_user_created": ("identity", "user_created"),
        "handle_user_deactivated": ("identity", "user_deactivated"),
    },
    tenants_from="identity",
    encrypted=(EncryptedColumn("assets", "recovery_key"),),
)
