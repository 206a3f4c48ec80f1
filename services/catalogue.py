"""The services of an OnTrackio deployment, by their contracts: the one list entrypoints
hand to core (which names no service), and the registry the other services ask for
tenants (identity's client). Every process knows every service, so that each declares the
whole broker topology before it publishes (core/topology.py)."""

from ontrackio.core.contract import Deployment
from ontrackio.evidence.contract import CONTRACT as EVIDENCE
from ontrackio.identity.client import key_source, tenant_lookup
from ontrackio.identity.contract import CONTRACT as IDENTITY
from ontrackio.inventory.contract import CONTRACT as INVENTORY
from ontrackio.privacy.contract import CONTRACT as PRIVACY

DEPLOYMENT = Deployment(
    [IDENTITY, INVENTORY, PRIVACY, EVIDENCE], tenant_lookup=tenant_lookup, key_source=key_source
)
SERVICES: tuple[str, ...] = DEPLOYMENT.services
