"""MFA end to end, through the gateway's JSON API against the running stack: TOTP enrolment
under the org policy (a session held at ``enrol`` can do nothing else), step-up after a
password sign-in (a code accepted once, five wrong codes end the session), recovery codes
(single use), the last factor kept while the policy requires MFA, an overdue enrolment
refused, members untouched by an ``admins`` policy, passkeys with a software authenticator
(register, passwordless sign-in, a cloned credential flagged and refused, wrong origin and
reused challenge refused, step-up with a passkey), an admin's reset only after a recent
sign-in, and the facts evidence reads. Every step is looked for in the audit trail.
"""

from __future__ import annotations

import json
import time

import psycopg
import pyotp
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ontrackio.core.db.clusters import Clusters
from ontrackio.gateway.api.mfa import PASSKEY_BINDING_COOKIE
from ontrackio.gateway.auth.session import MFA_REQUIRED_TYPE, SESSION_COOKIE
from ontrackio.identity.v1 import audit_pb2 as apb
from ontrackio.identity.v1 import audit_pb2_grpc as agrpc
from ontrackio.identity.v1 import mfa_pb2 as mpb
from ontrackio.identity.v1 import mfa_pb2_grpc as mgrpc
from ontrackio.identity.v1 import sessions_pb2 as sspb
from ontrackio.identity.v1 import sessions_pb2_grpc as ssgrpc
from tests.conftest import unique
from tests.e2e.signin_kit import PASSWORD, Browser, accept, cli, cli_md, invite, link_of, owner
from tests.e2e.test_gateway_kit import gateway_fixture  # noqa: F401 - fixture
from tests.helpers import create_tenant, eventually, md
from tests.soft_webauthn import SoftAuthenticator, b64url
from tests.unit.core.strategies import hostile_text, json_values

pytestmark = pytest.mark.e2e


def _policy(system, slug: str, **changes) -> sspb.SignInPolicy:
    evidence = changes.pop("evidence", None)
    request = sspb.SignInPolicy(**changes)
    if evidence is not None:
        request.mfa_evidence.SetInParent()
        for kind, values in evidence.items():
            request.mfa_evidence.by_kind[kind].values.extend(values)
    return ssgrpc.SessionServiceStub(cli(system)).SetSignInPolicy(
        request, metadata=cli_md(slug), timeout=10
    )


def _audit(channels, slug: str, action: str = "") -> list:
    return list(
        agrpc.AuditServiceStub(channels["identity"])
        .ListAudit(apb.ListAuditRequest(action=action, page_size=500), metadata=md(slug))
        .entries
    )


def _code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def _owner_signed_in(system, channels, gateway, smtp) -> tuple[str, str, str, Browser]:
    """A new tenant, its owner (email, user id) and a browser signed in as them."""
    slug = unique("mf")
    create_tenant(channels, slug)
    email, user_id = owner(system, gateway, smtp, slug)
    b = Browser(gateway, slug)
    assert b.sign_in(email, PASSWORD).status == 303
    return slug, email, user_id, b


def _held(b: Browser, stage: str) -> None:
    """The browser's session is held at ``stage``: the API refuses it, who-am-I says so."""

    def refused():
        r = b.get("/api/v1/users")
        return r if r.status == 403 else None

    r = eventually(refused)
    problem = r.json()
    assert problem["type"] == MFA_REQUIRED_TYPE and problem["stage"] == stage, problem
    assert b.get("/api/v1/session").json()["stage"] == stage


def _enrol_totp(b: Browser) -> tuple[str, list[str]]:
    begun = b.send_json("POST", "/api/v1/mfa/totp")
    assert begun.status == 200, begun
    body = begun.json()
    assert body["uri"].startswith("otpauth://totp/OnTrackio:")
    assert body["qr_svg"].startswith("<svg") and "<title>" in body["qr_svg"]
    secret = body["secret"]
    wrong = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": "000000"})
    if _code(secret) == "000000":  # a 1 in a million chance
        wrong = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": "000001"})
    assert wrong.status == 400 and wrong.json()["session_ended"] is False, wrong
    done = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": _code(secret)})
    assert done.status == 200, done
    step = done.json()
    assert step["accepted"] and step["stage"] == "full"
    assert len(step["recovery_codes"]) == 10 == step["recovery_codes_left"]
    return secret, step["recovery_codes"]


def test_totp_enrolment_step_up_recovery_and_the_last_factor_under_the_everyone_policy(
    system, channels, gateway, smtp
):
    slug, email, user_id, b = _owner_signed_in(system, channels, gateway, smtp)
    assert b.get("/api/v1/users").status == 200  # policy off: a full session

    p = _policy(system, slug, mfa_policy="everyone", mfa_grace_days=7)
    assert p.mfa_policy == "everyone" and p.HasField("mfa_grace_until")
    # The live session is judged again (the gateways forgot it): enrolment only.
    _held(b, "enrol")
    before = b.jar[SESSION_COOKIE]
    secret, codes = _enrol_totp(b)
    assert b.jar[SESSION_COOKIE] != before  # rotated: a new session
    assert b.get("/api/v1/users").status == 200
    me = b.get("/api/v1/session").json()
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "local", "totp")

    # A new sign-in with the password is held for a step-up.
    b2 = Browser(gateway, slug)
    r = b2.sign_in(email, PASSWORD)
    assert r.status == 303 and r.headers["location"].startswith("/signin/mfa"), r
    _held(b2, "step_up")
    # The enrolment's code was spent: it is refused now (replay), a later one is not.
    replay = b2.send_json("POST", "/api/v1/mfa/verify", {"code": _code(secret)})
    assert replay.status == 400, replay
    ok = b2.send_json("POST", "/api/v1/mfa/verify", {"code": _code(secret, 1)})
    assert ok.status == 200 and ok.json()["stage"] == "full", ok
    assert b2.get("/api/v1/users").status == 200

    # Recovery codes: one works once.
    b3 = Browser(gateway, slug)
    assert b3.sign_in(email, PASSWORD).status == 303
    used = b3.send_json("POST", "/api/v1/mfa/recovery", {"code": codes[0].upper()})
    assert used.status == 200 and used.json()["recovery_codes_left"] == 9, used
    b4 = Browser(gateway, slug)
    assert b4.sign_in(email, PASSWORD).status == 303
    again = b4.send_json("POST", "/api/v1/mfa/recovery", {"code": codes[0]})
    assert again.status == 400
    # A code as typed that cannot be one is a 400 too, never a 500.
    odd = b4.send_json("POST", "/api/v1/mfa/verify", {"code": "１２３４５６"})
    assert odd.status == 400, odd

    # The last factor stays while the policy requires MFA; with the policy off it may go.
    kept = b.send_json("DELETE", "/api/v1/mfa/totp")
    assert kept.status in (400, 409, 412), kept
    assert b.get("/api/v1/mfa").json()["totp"] is True
    _policy(system, slug, mfa_policy="off")
    gone = b.send_json("DELETE", "/api/v1/mfa/totp")
    assert gone.status == 200 and gone.json()["totp"] is False, gone

    actions = {
        a: _audit(channels, slug, a)
        for a in (
            "mfa.totp.begin",
            "mfa.totp.enrol",
            "mfa.failed",
            "mfa.step_up",
            "mfa.recovery_code.use",
            "mfa.totp.remove",
            "signin_policy.set",
        )
    }
    assert all(actions.values()), {a: len(e) for a, e in actions.items()}
    assert all(e.target == f"user:{user_id}" for e in actions["mfa.step_up"])
    assert {e.outcome for e in actions["mfa.failed"]} == {"refused"}


def test_five_wrong_codes_end_a_held_session(system, channels, gateway, smtp):
    slug, email, _, b = _owner_signed_in(system, channels, gateway, smtp)
    _policy(system, slug, mfa_policy="admins")
    _held(b, "enrol")
    secret, _ = _enrol_totp(b)
    wrong = "999999" if _code(secret) != "999999" else "999998"

    b2 = Browser(gateway, slug)
    assert b2.sign_in(email, PASSWORD).status == 303
    csrf = b2.csrf()
    answers = [
        b2.send_json("POST", "/api/v1/mfa/verify", {"code": wrong}, csrf=csrf) for _ in range(5)
    ]
    assert [a.status for a in answers] == [400] * 5
    assert [a.json()["session_ended"] for a in answers] == [False] * 4 + [True]
    assert b2.get("/api/v1/session").status == 401  # signed out
    ended = _audit(channels, slug, "session.end")
    assert any(json.loads(e.new_json).get("reason") == "mfa-failures" for e in ended)


def test_an_enrolment_past_its_grace_is_refused_and_members_are_not_held_by_admins(
    system, channels, gateway, smtp
):
    slug = unique("mf")
    create_tenant(channels, slug)
    email, _ = owner(system, gateway, smtp, slug)
    member_email = f"member-{slug}@example.com"
    invite(system, gateway, slug, member_email, role="member")
    assert accept(Browser(gateway, slug), link_of(smtp, member_email)).status == 303

    _policy(system, slug, mfa_policy="admins", mfa_grace_days=0)
    # An admin invited now may still join: the invitation opens a session at enrolment.
    admin_email = f"new-admin-{slug}@example.com"
    invite(system, gateway, slug, admin_email, role="admin")
    joined = Browser(gateway, slug)
    assert accept(joined, link_of(smtp, admin_email)).status == 303
    assert joined.get("/api/v1/session").json()["stage"] == "enrol"
    m = Browser(gateway, slug)
    assert m.sign_in(member_email, PASSWORD).status == 303
    assert m.get("/api/v1/session").json()["stage"] == "full"  # a member: not covered
    refused = Browser(gateway, slug).sign_in(email, PASSWORD)
    assert refused.status == 401, refused  # the owner: no factor, no grace left
    reasons = [json.loads(e.new_json)["reason"] for e in _audit(channels, slug, "signin.refused")]
    assert "mfa-enrolment-overdue" in reasons


# -- passkeys -------------------------------------------------------------------------------


def _register(b: Browser, auth: SoftAuthenticator, name: str = "Laptop") -> dict:
    opts = b.send_json("POST", "/api/v1/mfa/passkeys/options")
    assert opts.status == 200, opts
    body = opts.json()
    assert body["options"]["authenticatorSelection"]["residentKey"] == "required"
    assert body["options"]["attestation"] == "none"
    credential = json.loads(auth.register(json.dumps(body["options"]), origin=b.origin))
    done = b.send_json(
        "POST",
        "/api/v1/mfa/passkeys",
        {"challenge_id": body["challenge_id"], "credential": credential, "name": name},
    )
    assert done.status == 200, done
    return done.json()


def _passwordless(gateway, slug: str, auth: SoftAuthenticator, *, origin: str | None = None):
    b = Browser(gateway, slug)
    opts = b._send("POST", "/api/v1/signin/passkey/options", [("Origin", b.origin)])
    assert opts.status == 200, opts
    body = opts.json()
    body["binding"] = b.jar[PASSKEY_BINDING_COOKIE]
    assert body["options"].get("allowCredentials", []) == []  # discoverable
    assertion = json.loads(
        auth.authenticate(json.dumps(body["options"]), origin=origin or b.origin)
    )
    return b, _post_sign_in(b, body["challenge_id"], assertion), body, assertion


def _post_sign_in(b: Browser, challenge_id: str, assertion: dict):
    """POST a passwordless sign-in as the page does (no session, no CSRF token yet)."""
    payload = json.dumps({"challenge_id": challenge_id, "credential": assertion})
    return b._send(
        "POST",
        "/api/v1/signin/passkey",
        [("Origin", b.origin), ("Content-Type", "application/json")],
        payload.encode(),
    )


def test_passkeys_register_sign_in_and_a_clone_is_flagged(system, channels, gateway, smtp):
    slug, email, user_id, b = _owner_signed_in(system, channels, gateway, smtp)
    auth = SoftAuthenticator()
    step = _register(b, auth)
    assert len(step["recovery_codes"]) == 10  # the first factor
    status = b.get("/api/v1/mfa").json()
    assert [p["name"] for p in status["passkeys"]] == ["Laptop"]
    _register(b, SoftAuthenticator(), "Phone")  # several per user

    signed, r, challenge, assertion = _passwordless(gateway, slug, auth)
    assert r.status == 200, r
    me = signed.get("/api/v1/session").json()
    assert (me["method"], me["mfa_source"], me["factor"], me["stage"]) == (
        "passkey",
        "local",
        "passkey",
        "full",
    )
    # The same assertion again, from the same browser (its binding cookie put back): the
    # challenge is used up.
    signed.jar[PASSKEY_BINDING_COOKIE] = challenge["binding"]
    replay = _post_sign_in(signed, challenge["challenge_id"], assertion)
    assert replay.status == 403, replay
    # Signed for another origin: refused.
    _, wrong_origin, _, _ = _passwordless(gateway, slug, auth, origin="http://evil.example")
    assert wrong_origin.status == 403, wrong_origin

    # A clone: the same key with a counter behind the original's.
    clone = auth.clone()
    _, ok, _, _ = _passwordless(gateway, slug, auth)  # the original moves on
    assert ok.status == 200
    clone.sign_count = 0
    _, cloned, _, _ = _passwordless(gateway, slug, clone)
    assert cloned.status == 403, cloned
    flagged = [p for p in b.get("/api/v1/mfa").json()["passkeys"] if p["name"] == "Laptop"]
    assert flagged[0]["flagged"] is True
    _, after, _, _ = _passwordless(gateway, slug, auth)  # the original too: blocked for good
    assert after.status == 403
    entries = _audit(channels, slug, "mfa.passkey.flag")
    assert entries and json.loads(entries[0].new_json)["reason"] == "sign-count-regression"
    assert entries[0].target == f"user:{user_id}"
    assert _audit(channels, slug, "mfa.passkey.register")


def test_a_passkey_steps_a_held_session_up(system, channels, gateway, smtp):
    slug, email, _, b = _owner_signed_in(system, channels, gateway, smtp)
    auth = SoftAuthenticator()
    _register(b, auth)
    _policy(system, slug, mfa_policy="everyone")

    b2 = Browser(gateway, slug)
    assert b2.sign_in(email, PASSWORD).status == 303
    _held(b2, "step_up")
    opts = b2.send_json("POST", "/api/v1/mfa/passkeys/step-up/options").json()
    assert [c["id"] for c in opts["options"]["allowCredentials"]] == [b64url(auth.credential_id)]
    assertion = json.loads(auth.authenticate(json.dumps(opts["options"]), origin=b2.origin))
    done = b2.send_json(
        "POST",
        "/api/v1/mfa/passkeys/step-up",
        {"challenge_id": opts["challenge_id"], "credential": assertion},
    )
    assert done.status == 200 and done.json()["stage"] == "full", done
    me = b2.get("/api/v1/session").json()
    assert (me["mfa_source"], me["factor"]) == ("local", "passkey")


def test_an_admin_resets_factors_only_after_a_recent_sign_in(
    system, settings, channels, gateway, smtp
):
    slug = unique("mf")
    create_tenant(channels, slug)
    owner(system, gateway, smtp, slug)
    member_email = f"member-{slug}@example.com"
    user_id = invite(system, gateway, slug, member_email, role="member").invitation.user_id
    b = Browser(gateway, slug)
    assert accept(b, link_of(smtp, member_email)).status == 303
    begun = b.send_json("POST", "/api/v1/mfa/totp")
    secret = begun.json()["secret"]
    assert b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": _code(secret)}).status == 200

    admin_email = f"admin-{slug}@example.com"
    invite(system, gateway, slug, admin_email, role="admin")
    assert accept(Browser(gateway, slug), link_of(smtp, admin_email)).status == 303
    a = Browser(gateway, slug)
    assert a.sign_in(admin_email, PASSWORD).status == 303
    admin_session = a.get("/api/v1/session").json()["id"]
    # The admin's session is old: the reset is refused (and audited as refused).
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE sessions SET created_at = now() - interval '1 hour' WHERE id = %s",
            (admin_session,),
        )
    target = f"/admin/api/v1/users/{user_id}/mfa/reset"
    stale = a.send_json("POST", target)
    assert stale.status == 403, stale
    assert b.get("/api/v1/mfa").json()["totp"] is True
    # Signed in afresh: the reset goes through, the user's sessions end.
    a2 = Browser(gateway, slug)
    assert a2.sign_in(admin_email, PASSWORD).status == 303
    done = a2.send_json("POST", target)
    assert done.status == 200 and done.json()["totp"] == 1, done
    assert eventually(lambda: b.get("/api/v1/session").status == 401)
    outcomes = {e.outcome for e in _audit(channels, slug, "mfa.reset")}
    assert outcomes == {"refused", "done"}
    # An unknown user is a 404, not an empty reset.
    unknown = a2.send_json(
        "POST", "/admin/api/v1/users/00000000-0000-4000-8000-000000000000/mfa/reset"
    )
    assert unknown.status == 404, unknown


def test_mfa_facts_for_evidence(system, channels, gateway, smtp):
    slug, email, _, b = _owner_signed_in(system, channels, gateway, smtp)
    _register(b, SoftAuthenticator())
    stub = mgrpc.MfaServiceStub(system.channel("identity", "evidence"))
    facts = stub.GetMfaFacts(mpb.GetMfaFactsRequest(), metadata=md(slug), timeout=10)
    assert (facts.active_users, facts.users_enrolled, facts.users_with_passkey) == (1, 1, 1)
    assert (facts.admins, facts.admins_enrolled, facts.passkey_factors) == (1, 1, 1)
    assert facts.sign_ins_by_mfa_source["none"] >= 2  # the invitation's and the password's
    past = Timestamp()
    past.FromSeconds(int(time.time()) - 3600)
    before = stub.GetMfaFacts(mpb.GetMfaFactsRequest(as_of=past), metadata=md(slug), timeout=10)
    assert before.users_enrolled == 0 and before.sign_ins == 0


# -- hostile input at the edge --------------------------------------------------------------


@pytest.fixture(scope="module")
def pending_totp(system, channels, gateway, smtp):
    """A full session with a TOTP set-up begun (so confirm codes are judged)."""
    slug, email, _, b = _owner_signed_in(system, channels, gateway, smtp)
    assert b.send_json("POST", "/api/v1/mfa/totp").status == 200
    return b, b.csrf()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(code=hostile_text | st.text(max_size=70) | st.sampled_from(["\x00" * 6, "１２３４５６"]))
def test_any_code_is_a_clear_400_never_a_500(pending_totp, code):
    b, csrf = pending_totp
    r = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": code}, csrf=csrf)
    while r.status == 429:  # the per-user rate limit: wait as told
        time.sleep(float(r.headers["retry-after"]))
        r = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": code}, csrf=csrf)
    assert r.status == 400, (code, r)
    assert r.headers["content-type"] == "application/problem+json"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(credential=json_values, challenge=st.uuids())
def test_any_credential_is_refused_clearly_never_a_500(
    gateway, pending_totp, credential, challenge
):
    b, _ = pending_totp
    body = json.dumps({"challenge_id": str(challenge), "credential": credential}).encode()
    r = b._send(
        "POST",
        "/api/v1/signin/passkey",
        [("Origin", b.origin), ("Content-Type", "application/json")],
        body,
    )
    assert r.status in (400, 403), (credential, r)
