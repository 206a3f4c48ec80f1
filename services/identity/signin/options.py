"""What a tenant's sign-in page may offer: the configured SAML IdP, the enabled OIDC
providers, and whether the tenant requires SSO (then the password form, kept for its
break-glass owners, sits behind an explicit link). Only what the page shows anyone who
opens it: no entity ids, URLs or user names."""

from __future__ import annotations

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.signin import policy
from ontrackio.identity.sso.oidc import store as oidc_store
from ontrackio.identity.sso.saml import store as saml_store
from ontrackio.identity.v1 import signin_pb2 as pb


def sign_in_options(u: UnitOfWork) -> pb.SignInOptions:
    return pb.SignInOptions(
        saml=saml_store.is_configured(u),
        oidc_providers=oidc_store.list_enabled(u),
        sso_required=bool(policy.load(u)["sso_required"]),
    )
