"""OpenID Connect sign-in per tenant: Google Workspace, Microsoft Entra ID, generic OIDC.

``rules`` checks an ID token's claims and the edge's inputs (pure); ``store`` keeps each
tenant's provider configurations (the client secret encrypted) and its pending logins;
``client`` talks to the provider (discovery, JWKS, token endpoint); ``flow`` runs a login
from its start to the ``ExternalIdentity`` that sign-in turns into a session.
"""
