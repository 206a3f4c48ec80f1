"""The services of an OnTrackio deployment, by their contracts: the one list entrypoints
hand to core (which names no service). Every process knows every service, so that each
declares the whole broker topology before it publishes (core/topology.py)."""

from ontrackio.core.contract import Deployment
from ontrackio.evidence.contract import CONTRACT as EVIDENCE
from ontrackio.identity.contract import CONTRACT as IDENTITY
from ontrackio.inventory.contract import CONTRACT as INVENTORY
from ontrackio.privacy.contract import CONTRACT as PRIVACY

DEPLOYMENT = Deployment([IDENTITY, INVENTORY, PRIVACY, EVIDENCE])
SERVICES: tuple[str, ...] = DEPLOYMENT.services
