"""Identity's contract: the tenant registry's and users' events, and the saga it drives.

Identity is the tenant registry: every service (identity included) follows its
tenant_created and tenant_deleted, and identity hears every service's lifecycle reports.
"""

from ontrackio.core.contract import Contract
from ontrackio.core.keys.reencrypt import EncryptedColumn
from ontrackio.identity.v1 import access_pb2 as access
from ontrackio.identity.v1 import events_pb2 as events
from ontrackio.identity.v1 import sessions_pb2 as sessions
from ontrackio.identity.v1 import signin_pb2 as signin

CONTRACT = Contract(
    service="identity",
    publishes={
        "tenant_created": (events.TenantCreated, 1),
        "tenant_activated": (events.TenantActivated, 1),
        "tenant_deleted": (events.TenantDeleted, 1),
        "data_keys_rotated": (events.DataKeysRotated, 1),
        "user_created": (events.UserCreated, 1),
        "user_deactivated": (events.UserDeactivated, 1),
        "token_revoked": (access.TokenRevoked, 1),
        "allowlist_changed": (access.AllowlistChanged, 1),
        "sessions_revoked": (sessions.SessionsRevoked, 1),
        # local sign-in: wakes identity's own worker to send a message of the mail outbox
        "mail_queued": (signin.MailQueued, 1),
    },
    subscribes={"handle_mail_queued": ("identity", "mail_queued")},
    tenants_from="identity",
    from_every_service={
        "tenant_ready": "handle_tenant_ready",
        "tenant_provisioning_failed": "handle_tenant_provisioning_failed",
        "tenant_dropped": "handle_tenant_dropped",
    },
    # Columns sealed with the tenant's data key, re-encrypted after a rotation (core/keys).
    encrypted=(
        EncryptedColumn("saml_sp_keys", "private_key"),  # the SAML SP key (sso/saml)
        EncryptedColumn("mail_outbox", "body"),  # holds invitation links until sent
        EncryptedColumn("oidc_providers", "client_secret", id_column="provider"),  # sso/oidc
        EncryptedColumn("mfa_totp", "secret", id_column="user_id"),  # TOTP secrets (mfa/store)
    ),
)
