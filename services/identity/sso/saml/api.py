"""Identity's SamlService entrypoints: decode, call the SAML modules, encode.

ConsumeResponse is one transaction on the tenant's database (after the tenant's verified
domains are read from the control database): read the configuration and our key;
``acs.verify`` (no database); the checks only the database can make (a request we issued
for this tenant, used once; an unsolicited response only where allowed; an assertion id
never seen); then sign-in proper (``signin.sso.attempt``) under a savepoint, so that a
refused sign-in is audited and still commits the assertion and the request as used. A
refusal before sign-in rolls everything back and is an audit entry of its own.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from onelogin.saml2.authn_request import OneLogin_Saml2_Authn_Request

from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.errors import (
    InvalidSamlConfig,
    MalformedSamlResponse,
    SamlNotConfigured,
    SamlResponseRefused,
    SignInRefused,
)
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.signin import sso
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.signin.throttle_rules import address_key
from ontrackio.identity.sso import pending
from ontrackio.identity.sso.saml import acs, metadata, rules, store
from ontrackio.identity.v1 import saml_pb2 as pb
from ontrackio.identity.v1 import saml_pb2_grpc as pb_grpc


def config_pb(row: dict[str, Any]) -> pb.SamlConfig:
    return pb.SamlConfig(
        idp_entity_id=row["idp_entity_id"],
        sso_url=row["sso_url"],
        certificates=list(row["certificates"]),
        email_attribute=row["email_attribute"],
        name_attribute=row["name_attribute"],
        groups_attribute=row["groups_attribute"],
        allow_idp_initiated=row["allow_idp_initiated"],
        requested_authn_context=list(row["requested_authn_context"]),
        authn_context_comparison=row["authn_context_comparison"],
        updated_at=ts(row["updated_at"]),
        updated_by=row["updated_by"],
        certificate_fingerprints=[rules.fingerprint(c) for c in row["certificates"]],
    )


def login_redirect(config: rules.IdpConfig, sp: rules.SpEndpoints) -> tuple[str, str]:
    """(the IdP URL carrying a new AuthnRequest, HTTP-Redirect binding, unsigned; its id).

    python3-saml builds the request (our ACS and entity id, the tenant's requested
    AuthnContext) and its id; RelayState carries the id too (we never redirect to it)."""
    request = OneLogin_Saml2_Authn_Request(acs.onelogin_settings(config, sp, None))
    request_id = request.get_id()
    query = urlencode({"SAMLRequest": request.get_request(deflate=True), "RelayState": request_id})
    return config.sso_url + ("&" if "?" in config.sso_url else "?") + query, request_id


class SamlServicer(pb_grpc.SamlServiceServicer):
    def __init__(self, rt: Runtime):
        self.rt = rt
        self.dbs = rt.dbs
        self.fields = rt.fields
        self.allow_loopback_http = rt.settings.saml_allow_loopback_http
        self.fetch_timeout = rt.settings.saml_metadata_timeout_seconds
        self.key = rt.settings.token_hash_key.get_secret_value().encode()
        self.pending_budget = pending.Budget(
            rt.settings.sso_pending_logins_per_client, rt.settings.sso_pending_logins_per_tenant
        )
        acs.compile_schemas_once()

    # -- sealing our private key ----------------------------------------------------------

    def _seal(self, info):
        return lambda row_id, text: self.fields.encrypt_text(
            info, store.SP_PRIVATE_KEY.table, store.SP_PRIVATE_KEY.column, row_id, text
        )

    def _unseal(self, info):
        return lambda row_id, blob: self.fields.decrypt_text(
            info, store.SP_PRIVATE_KEY.table, store.SP_PRIVATE_KEY.column, row_id, blob
        )

    def _configured(self, u) -> rules.IdpConfig:
        row = store.get_config(u)
        if row is None:
            raise SamlNotConfigured("SAML single sign-on is not configured for this tenant")
        return store.config_of(row)

    # -- the edge's calls -----------------------------------------------------------------

    def GetSpMetadata(self, request, context):
        info = current_tenant()
        sp = rules.SpEndpoints.from_origin(request.canonical_origin)
        self.fields.ready(info)
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(info) as u:
            key = store.ensure_sp_key_pair(u, self._seal(info), self._unseal(info), sp.entity_id)
        return pb.SpMetadata(
            xml=metadata.sp_metadata(sp, key),
            entity_id=sp.entity_id,
            acs_url=sp.acs_url,
            certificate=key.cert_pem,
        )

    def StartLogin(self, request, context):
        info = current_tenant()
        sp = rules.SpEndpoints.from_origin(request.canonical_origin)
        with self.dbs.unit_of_work(info) as u:
            config = self._configured(u)
            url, request_id = login_redirect(config, sp)
            binding = rules.new_binding()
            store.issue_request(
                u,
                request_id,
                safe_next(request.next),
                rules.binding_hash(self.key, binding),
                address_key(request.client_address),
                self.pending_budget,
            )
        return pb.StartLoginResponse(redirect_url=url, request_id=request_id, binding=binding)

    def ConsumeResponse(self, request, context):
        info = current_tenant()
        sp = rules.SpEndpoints.from_origin(request.canonical_origin)
        with origin.bound(call_origin(context, request.client_address)):
            try:
                return self._consume(info, sp, request)
            except (MalformedSamlResponse, SamlResponseRefused) as exc:
                with self.dbs.unit_of_work(info) as u:  # the attempt rolled back
                    store.refused(u, exc.cause, {"user_agent": request.user_agent[:200]})
                raise
            except SamlNotConfigured:
                with self.dbs.unit_of_work(info) as u:
                    store.refused(u, "not_configured", {})
                raise

    def _consume(self, info, sp: rules.SpEndpoints, request):
        self.fields.ready(info)
        domains = self.rt.control.verified_domains(info.slug)
        with self.dbs.unit_of_work(info) as u:
            row, key = store.acs_inputs(u, self._unseal(info))
            if row is None:
                raise SamlNotConfigured("SAML single sign-on is not configured for this tenant")
            config = store.config_of(row)
            verified = acs.verify(request.saml_response, config, sp, key)
            store.sweep(u)
            # A replay is named as such before its (used) request id is looked at.
            if not store.remember_assertion(
                u, config.idp_entity_id, verified.assertion_id, verified.expires_at
            ):
                raise SamlResponseRefused("replayed")
            if verified.in_response_to is None:
                if not config.allow_idp_initiated:
                    raise SamlResponseRefused("unsolicited")
                next_path = safe_next(acs.relay_state(request.relay_state))
            else:
                found = store.consume_request(u, verified.in_response_to)
                if found is None or not found.live:
                    raise SamlResponseRefused("unknown_request")
                if not rules.same_browser(self.key, found.binding_hash, request.binding):
                    raise SamlResponseRefused("other_browser")  # login CSRF
                next_path = found.next
            outcome = sso.attempt(
                u,
                self.key,
                verified.identity,
                verified_domains=domains,
                client_address=request.client_address,
                user_agent=request.user_agent,
                next=next_path,
            )
        if isinstance(outcome, SignInRefused):
            raise outcome  # audited, with the assertion and the request used, committed
        return outcome

    # -- admin ----------------------------------------------------------------------------

    def GetSamlConfig(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            row = store.get_config(u)
        if row is None:
            raise SamlNotConfigured("SAML single sign-on is not configured for this tenant")
        return config_pb(row)

    def _validated(self, c: pb.SamlConfig, **override) -> rules.IdpConfig:
        fields = {
            "idp_entity_id": c.idp_entity_id,
            "sso_url": c.sso_url,
            "certificates": list(c.certificates),
            "email_attribute": c.email_attribute,
            "name_attribute": c.name_attribute,
            "groups_attribute": c.groups_attribute,
            "allow_idp_initiated": c.allow_idp_initiated,
            "requested_authn_context": list(c.requested_authn_context),
            "authn_context_comparison": c.authn_context_comparison,
        }
        fields.update(override)
        return rules.validate_config(**fields, allow_loopback_http=self.allow_loopback_http)

    def SetSamlConfig(self, request, context):
        config = self._validated(request.config)
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            return config_pb(store.set_config(u, config, actor=actor_of(context)))

    def ImportSamlMetadata(self, request, context):
        # Before anything is fetched: only admins make identity fetch a URL.
        role_store.require_for_tenant(
            self.dbs, current_tenant(), actor_of(context), roles.ADMINISTER
        )
        source = request.WhichOneof("source")
        if source == "url":
            xml = metadata.fetch(
                request.url,
                allow_loopback_http=self.allow_loopback_http,
                timeout=self.fetch_timeout,
            )
        elif source == "xml":
            xml = request.xml.encode()
        else:
            raise InvalidSamlConfig("send the metadata as xml or url")
        imported = metadata.parse_idp_metadata(xml, request.entity_id)
        info = current_tenant()
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(info) as u:
            if request.HasField("settings"):
                base = request.settings
            else:
                row = store.get_config(u)
                base = config_pb(row) if row is not None else pb.SamlConfig()
            config = self._validated(
                base,
                idp_entity_id=imported.idp_entity_id,
                sso_url=imported.sso_url,
                certificates=list(imported.certificates),
            )
            row = store.set_config(
                u, config, actor=actor_of(context), action="saml.metadata_imported"
            )
        return config_pb(row)
