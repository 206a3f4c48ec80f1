"""Evidence's contract: it records asset facts from inventory's assets."""

from ontrackio.core.contract import Contract

CONTRACT = Contract(
    service="evidence",
    subscribes={"handle_asset_created": ("inventory", "asset_created")},
    tenants_from="identity",
)
