"""Privacy's contract: it records data subjects from identity's users."""

from ontrackio.core.contract import Contract

CONTRACT = Contract(
    service="privacy",
    subscribes={"handle_user_created": ("identity", "user_created")},
    tenants_from="identity",
)
