"""Who is calling: service identities inside the system and the caller rules of methods.

Every process presents a certificate of its deployment's CA (mutual TLS, core/tls.py). Its
identity is the certificate's one URI SAN, ``spiffe://ontrackio/<deployment>/<name>``; a
certificate without exactly one such URI, or of another deployment, names nobody. The
names: one per domain service (its api and worker share it), ``gateway``, ``cli`` (the
``ontrack`` tool) and ``operator`` (other tooling run by an operator: ``make run``'s demo
set-up, the benchmark's drivers, the test suite).

Methods declare who may call them (``Callers``, next to each registration in the
services' api.py); the server interceptor refuses anyone else. The caller's actor
(``x-ontrack-actor``, written into audit records) is believed only from ``ACTOR_BEARERS``.
"""

from __future__ import annotations

from collections.abc import Mapping

TRUST_DOMAIN = "ontrackio"
DOMAIN_SERVICES = frozenset({"identity", "inventory", "privacy", "evidence"})
GATEWAY, CLI, OPERATOR = "gateway", "cli", "operator"
IDENTITIES = DOMAIN_SERVICES | {GATEWAY, CLI, OPERATOR}

# Callers that act for a person and say who (the gateway for an API token, the CLI for the
# operator at the keyboard); from anyone else an actor is a forgery.
ACTOR_BEARERS = frozenset({GATEWAY, CLI})
ACTOR_METADATA = "x-ontrack-actor"
# Where the act came from (the audit trail's request id and client address): said by the
# same callers as the actor, refused from anyone else.
REQUEST_ID_METADATA = "x-ontrack-request-id"
CLIENT_ADDRESS_METADATA = "x-ontrack-client-address"
EDGE_METADATA = (ACTOR_METADATA, REQUEST_ID_METADATA, CLIENT_ADDRESS_METADATA)

# Rule sets the services' registrations are built from.
ANYONE = IDENTITIES
OPERATORS = frozenset({CLI, OPERATOR})  # tenant lifecycle
TENANT_READERS = DOMAIN_SERVICES | {GATEWAY, CLI, OPERATOR}  # tenant look-ups
TENANT_DATA = frozenset({GATEWAY, OPERATOR})  # a tenant's records: the API, operator tooling
CREDENTIALS = frozenset({GATEWAY, CLI})  # API tokens and allowlists (audited with an actor)
EDGE = frozenset({GATEWAY})  # what only the gateway does (token checks)


def every(methods: str, who: frozenset[str]) -> dict[str, frozenset[str]]:
    """The same callers for each of the space-separated `methods`."""
    return dict.fromkeys(methods.split(), who)


Callers = Mapping[str, frozenset[str]]
"""Method name (as in the .proto) -> the identities allowed to call it."""


def spiffe_id(deployment: str, name: str) -> str:
    """The URI SAN of `name`'s certificate in `deployment`."""
    return f"spiffe://{TRUST_DOMAIN}/{deployment}/{name}"


def identity_of(peer_identities: list[bytes] | None, deployment: str) -> str | None:
    """The identity named by a peer certificate's subject alternative names, or None.

    `peer_identities` is what grpc reports for the peer (``context.peer_identities()``:
    every SAN of the verified certificate, or None without one). Exactly one SAN of the
    trust domain is required, of this deployment and a known name; anything else (none,
    two, another deployment, an unknown name, bytes that are not ASCII) names nobody.
    """
    prefix = f"spiffe://{TRUST_DOMAIN}/".encode()
    ours = [p for p in peer_identities or () if p.startswith(prefix)]
    if len(ours) != 1:
        return None
    try:
        dep, _, name = ours[0][len(prefix) :].decode("ascii").partition("/")
    except UnicodeDecodeError:
        return None
    if dep != deployment or name not in IDENTITIES:
        return None
    return name
