"""Attacks on MFA (issue 13's attack review), end to end against the running stack through
the gateway (JSON API and pages) and identity's MfaService.

Each test asserts the secure behaviour, so it fails when the attack works again. The attacks
the review found working, all fixed since (docs/mfa.md "Attacks considered"):

- A session opened at ``enrol`` keeps that stage after the user has enrolled a factor in
  another session (only ``full``/``none`` rows are judged again), so a session opened with a
  stolen password before the victim enrolled can still add the attacker's own factor and
  become ``full``: the step-up is bypassed.
- A pending TOTP set-up is per user, not per session: a second session of the same user is
  handed the same secret, so an attacker who began a set-up knows the secret the victim then
  confirms.
- The five-wrong-codes limit is per session only: with the password an attacker opens
  session after session and keeps guessing TOTP codes with no overall cap; concurrent wrong
  codes at one session are all judged (the stage is read before the TOTP row is locked).
- An admin (not an owner) resets an owner's factors (and ends the owner's sessions).
- After an admin's reset, a user past the enrolment grace still cannot sign in to enrol
  (docs/mfa.md: "refused ... until an admin resets the user"): the reset changes nothing
  the stage decision reads.
- Two removals at once (the TOTP and the last passkey) both pass the "keep one factor"
  check: the user is left with none while the policy requires MFA.
- A session whose MFA was IdP evidence stays ``full`` after the tenant stops accepting that
  evidence (only ``full``/``none`` rows are judged again).

Sound (these pass and guard real attacks): a held session reaching anything else (JSON,
pages, forms, identity directly), a step_up session adding or managing factors, the same
TOTP or recovery code raced in several sessions, WebAuthn challenges crossing sessions or
browsers, a passkey of one tenant at another (and a spoofed X-Forwarded-Host), secrets in
the audit trail and the process logs, hostile input to the new endpoints.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import grpc
import pytest

from ontrackio.gateway.api.mfa import CODE_REFUSED_TYPE, PASSKEY_BINDING_COOKIE
from ontrackio.gateway.auth.session import MFA_REQUIRED_TYPE, SESSION_COOKIE
from ontrackio.identity.v1 import mfa_pb2 as mpb
from ontrackio.identity.v1 import mfa_pb2_grpc as mgrpc
from ontrackio.identity.v1 import sessions_pb2 as sspb
from ontrackio.identity.v1 import sessions_pb2_grpc as ssgrpc
from tests.conftest import unique
from tests.e2e.signin_kit import PASSWORD, Browser, accept, cli, cli_md, invite, link_of, owner
from tests.e2e.test_gateway_kit import (
    gateway_fixture,  # noqa: F401 - fixture
    raw,
    request_bytes,
)
from tests.e2e.test_mfa import _audit, _code, _owner_signed_in, _post_sign_in
from tests.helpers import create_tenant, eventually, eventually_passes, md
from tests.soft_webauthn import SoftAuthenticator

pytestmark = pytest.mark.e2e


# -- helpers --------------------------------------------------------------------------------


def _policy(system, slug: str, **changes) -> sspb.SignInPolicy:
    return ssgrpc.SessionServiceStub(cli(system)).SetSignInPolicy(
        sspb.SignInPolicy(**changes), metadata=cli_md(slug), timeout=10
    )


def _wrong(secret: str) -> str:
    """A code that matches none of the steps accepted now."""
    window = {_code(secret, k) for k in (-2, -1, 0, 1, 2)}
    return next(c for c in (f"{n:06d}" for n in range(100000, 1000000, 7919)) if c not in window)


def _stage(b: Browser) -> str:
    return b.get("/api/v1/session").json()["stage"]


def _held(b: Browser, stage: str) -> None:
    def refused():
        r = b.get("/api/v1/users")
        return r if r.status == 403 else None

    problem = eventually(refused).json()
    assert problem["type"] == MFA_REQUIRED_TYPE and problem["stage"] == stage, problem
    assert _stage(b) == stage


def _begin_totp(b: Browser) -> str:
    r = b.send_json("POST", "/api/v1/mfa/totp")
    assert r.status == 200, r
    return r.json()["secret"]


def _enrol_totp(b: Browser) -> tuple[str, list[str]]:
    secret = _begin_totp(b)
    done = b.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": _code(secret)})
    assert done.status == 200 and done.json()["stage"] == "full", done
    return secret, done.json()["recovery_codes"]


def _register(b: Browser, auth: SoftAuthenticator, name: str = "Key") -> object:
    """The answer to a passkey registration (a Reply), options asked for first."""
    opts = b.send_json("POST", "/api/v1/mfa/passkeys/options")
    if opts.status != 200:
        return opts
    body = opts.json()
    credential = json.loads(auth.register(json.dumps(body["options"]), origin=b.origin))
    return b.send_json(
        "POST",
        "/api/v1/mfa/passkeys",
        {"challenge_id": body["challenge_id"], "credential": credential, "name": name},
    )


def _post_json(b: Browser, target: str, body, csrf: str, cookie: str):
    """An unsafe JSON request with a fixed cookie, not touching the jar (for threads)."""
    headers = [
        ("Origin", b.origin),
        ("X-CSRF-Token", csrf),
        ("Content-Type", "application/json"),
        ("Cookie", f"{SESSION_COOKIE}={cookie}"),
    ]
    return raw(
        b.gateway.port,
        request_bytes("POST", target, b.host, headers, json.dumps(body).encode(), close=True),
        source=b.source,
    )


def _together(calls) -> list:
    """Run the calls at the same moment (as near as threads allow); their answers."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as ex:
        return list(ex.map(run, calls))


def _tenant_with_totp_owner(
    system, channels, gateway, smtp, policy="everyone", before_policy=lambda b: None
):
    """A tenant whose owner has TOTP set up, under ``policy``: (slug, email, user id,
    secret, recovery codes, the owner's browser). The browser's session was full before
    the policy (``before_policy`` runs then); a policy on holds it at step_up (it proved no
    MFA at sign-in)."""
    slug = unique("mx")
    create_tenant(channels, slug)
    email, user_id = owner(system, gateway, smtp, slug)
    b = Browser(gateway, slug)
    assert b.sign_in(email, PASSWORD).status == 303
    secret, codes = _enrol_totp(b)
    before_policy(b)
    _policy(system, slug, mfa_policy=policy)
    return slug, email, user_id, secret, codes, b


def _step_up_browser(gateway, slug, email) -> Browser:
    b = Browser(gateway, slug)
    r = b.sign_in(email, PASSWORD)
    assert r.status == 303 and r.headers["location"].startswith("/signin/mfa"), r
    return b


# -- findings -------------------------------------------------------------------------------


def test_an_enrol_session_opened_before_the_user_enrolled_cannot_add_a_factor(
    system, channels, gateway, smtp
):
    """Stolen password, no factor yet: the attacker's session is at enrol. The victim then
    sets up TOTP in their own session. The attacker's session must now be at step_up (the
    user has a factor): it may not register its own passkey and become full."""
    slug = unique("mx")
    create_tenant(channels, slug)
    email, _ = owner(system, gateway, smtp, slug)
    _policy(system, slug, mfa_policy="everyone", mfa_grace_days=7)
    attacker = Browser(gateway, slug)
    assert attacker.sign_in(email, PASSWORD).status == 303
    _held(attacker, "enrol")
    victim = Browser(gateway, slug)
    assert victim.sign_in(email, PASSWORD).status == 303
    _enrol_totp(victim)
    # A new sign-in with the password is held for a step-up now.
    assert _stage(_step_up_browser(gateway, slug, email)) == "step_up"

    done = _register(attacker, SoftAuthenticator(), "attacker's key")
    stage = _stage(attacker)
    users = attacker.get("/api/v1/users").status
    assert done.status != 200 and stage != "full" and users == 403, (
        f"the stale enrol session added a factor: {done.status}, stage {stage}, "
        f"/api/v1/users {users}"
    )


def test_a_pending_totp_secret_is_not_handed_to_another_session(system, channels, gateway, smtp):
    """An attacker with the password begins a TOTP set-up; the victim then begins theirs in
    another session. The victim must not be given the secret the attacker saw (else the
    attacker holds the victim's second factor from then on)."""
    slug = unique("mx")
    create_tenant(channels, slug)
    email, _ = owner(system, gateway, smtp, slug)
    _policy(system, slug, mfa_policy="everyone", mfa_grace_days=7)
    attacker = Browser(gateway, slug)
    assert attacker.sign_in(email, PASSWORD).status == 303
    seen = _begin_totp(attacker)
    attacker.send_json("POST", "/auth/logout")

    victim = Browser(gateway, slug)
    assert victim.sign_in(email, PASSWORD).status == 303
    mine = _begin_totp(victim)
    confirmed = victim.send_json("POST", "/api/v1/mfa/totp/confirm", {"code": _code(mine)})
    assert confirmed.status == 200, confirmed
    later = _step_up_browser(gateway, slug, email)
    passed = later.send_json("POST", "/api/v1/mfa/verify", {"code": _code(seen, 1)})
    assert mine != seen and passed.status != 200, (
        "the victim's confirmed TOTP secret is the one another session was shown"
    )


def test_wrong_totp_codes_across_many_sessions_have_an_overall_cap(system, channels, gateway, smtp):
    """Five wrong codes end a session; an attacker with the password opens another and
    goes on. After 30 wrong codes the user's step-up must be locked (for a while), or the
    password sign-in refused: else TOTP is guessed online (3 in 10**6 per try)."""
    slug, email, _, secret, _, _ = _tenant_with_totp_owner(system, channels, gateway, smtp)
    for _ in range(6):
        b = _step_up_browser(gateway, slug, email)
        csrf = b.csrf()
        answers = [
            b.send_json("POST", "/api/v1/mfa/verify", {"code": _wrong(secret)}, csrf=csrf)
            for _ in range(5)
        ]
        assert answers[-1].status == 400 and answers[-1].json()["session_ended"], answers[-1]
    last = Browser(gateway, slug)
    r = last.sign_in(email, PASSWORD)
    if r.status == 303 and r.headers["location"].startswith("/signin/mfa"):
        ok = last.send_json("POST", "/api/v1/mfa/verify", {"code": _code(secret, 1)})
        assert ok.status != 200, "after 30 wrong codes in 6 sessions the step-up still works"


def test_concurrent_wrong_codes_at_one_session_are_judged_five_times_at_most(
    system, channels, gateway, smtp
):
    """The stage and the session are read before the TOTP row is locked, so requests that
    wait on the lock are judged after the fifth wrong code has ended the session. Three
    sessions, sixteen codes at once each: at most five judged at any."""
    slug, email, _, secret, _, _ = _tenant_with_totp_owner(system, channels, gateway, smtp)
    counts = []
    for _ in range(3):
        b = _step_up_browser(gateway, slug, email)
        csrf, cookie = b.csrf(), b.jar[SESSION_COOKIE]
        wrong = _wrong(secret)
        answers = _together(
            [
                lambda b=b, w=wrong, c=csrf, k=cookie: _post_json(
                    b, "/api/v1/mfa/verify", {"code": w}, c, k
                )
                for _ in range(16)
            ]
        )
        judged = [
            a for a in answers if a.status == 400 and a.json().get("type") == CODE_REFUSED_TYPE
        ]
        counts.append(len(judged))
        time.sleep(2)  # the per-user rate limit's bucket fills again
    assert max(counts) <= 5, f"wrong codes judged at one session, per round: {counts}"


def _admin_browser(system, gateway, smtp, slug) -> Browser:
    """An admin (not owner) freshly signed in with a full session."""
    admin_email = f"admin-{slug}@example.com"
    invite(system, gateway, slug, admin_email, role="admin")
    a = Browser(gateway, slug)
    assert accept(a, link_of(smtp, admin_email)).status == 303
    if _stage(a) != "full":
        _enrol_totp(a)
    assert _stage(a) == "full"
    return a


def test_an_admin_cannot_reset_an_owners_factors(system, channels, gateway, smtp):
    """Only an owner deactivates an owner (docs/sessions.md); stripping an owner's MFA
    (and, past the grace, locking them out) must be an owner's act too."""
    slug, email, owner_id, _, _, ob = _tenant_with_totp_owner(
        system, channels, gateway, smtp, policy="off"
    )
    a = _admin_browser(system, gateway, smtp, slug)
    r = a.send_json("POST", f"/admin/api/v1/users/{owner_id}/mfa/reset")
    assert r.status == 403, r
    assert ob.get("/api/v1/mfa").json()["totp"] is True


def test_a_user_reset_by_an_admin_past_the_grace_may_sign_in_to_enrol(
    system, channels, gateway, smtp
):
    """docs/mfa.md: past the grace a user with no factor is refused "until an admin resets
    the user". After the reset the user must be able to sign in (at enrol)."""
    slug = unique("mx")
    create_tenant(channels, slug)
    owner(system, gateway, smtp, slug)
    member_email = f"member-{slug}@example.com"
    member_id = invite(system, gateway, slug, member_email, role="member").invitation.user_id
    m = Browser(gateway, slug)
    assert accept(m, link_of(smtp, member_email)).status == 303
    _enrol_totp(m)
    a = _admin_browser(system, gateway, smtp, slug)
    admin_secret, _ = _enrol_totp(a)
    _policy(system, slug, mfa_policy="everyone", mfa_grace_days=0)
    _held(a, "step_up")
    stepped = a.send_json("POST", "/api/v1/mfa/verify", {"code": _code(admin_secret, 1)})
    assert stepped.status == 200, stepped
    reset = a.send_json("POST", f"/admin/api/v1/users/{member_id}/mfa/reset")
    assert reset.status == 200 and reset.json()["totp"] == 1, reset
    again = Browser(gateway, slug).sign_in(member_email, PASSWORD)
    assert again.status == 303 and again.headers["location"].startswith("/signin/mfa"), (
        f"the reset user cannot sign in to enrol again: {again.status}"
    )


# -- sound: held sessions -------------------------------------------------------------------


def test_a_step_up_session_cannot_add_or_manage_factors(system, channels, gateway, smtp):
    """Password known, factor not: a session at step_up may present a factor, nothing
    else: no new TOTP or passkey, no new recovery codes, no rename or removal, through the
    JSON API, the security page's forms, or identity directly."""

    def add_passkey(b):
        assert _register(b, SoftAuthenticator(), "Laptop").status == 200

    slug, email, _, secret, _, full = _tenant_with_totp_owner(
        system, channels, gateway, smtp, before_policy=add_passkey
    )
    before = full.get("/api/v1/mfa").json()
    passkey = before["passkeys"][0]["id"]

    b = _step_up_browser(gateway, slug, email)
    _held(b, "step_up")
    csrf = b.csrf()
    attempts = {
        "begin totp": b.send_json("POST", "/api/v1/mfa/totp", {"fresh": True}, csrf=csrf),
        "confirm totp": b.send_json(
            "POST", "/api/v1/mfa/totp/confirm", {"code": _code(secret, 1)}, csrf=csrf
        ),
        "passkey options": b.send_json("POST", "/api/v1/mfa/passkeys/options", csrf=csrf),
        "passkey register": b.send_json(
            "POST",
            "/api/v1/mfa/passkeys",
            {"challenge_id": "00000000-0000-4000-8000-000000000000", "credential": {}},
            csrf=csrf,
        ),
        "recovery codes": b.send_json("POST", "/api/v1/mfa/recovery-codes", csrf=csrf),
        "rename": b.send_json("PATCH", f"/api/v1/mfa/passkeys/{passkey}", {"name": "x"}, csrf=csrf),
        "remove passkey": b.send_json("DELETE", f"/api/v1/mfa/passkeys/{passkey}", csrf=csrf),
        "remove totp": b.send_json("DELETE", "/api/v1/mfa/totp", csrf=csrf),
    }
    for path in (
        "/account/security/totp",
        "/account/security/totp/remove",
        "/account/security/recovery-codes",
        f"/account/security/passkeys/{passkey}/remove",
    ):
        attempts[path] = b.post_form(path, {"csrf_token": csrf})
    confirm_form = b.post_form(
        "/auth/mfa/totp/confirm", {"csrf_token": csrf, "code": _code(secret, 1)}
    )
    assert {k: r.status for k, r in attempts.items() if r.status < 400} == {}
    assert confirm_form.status == 303 and confirm_form.headers["location"].startswith(
        "/signin/mfa"
    ), confirm_form
    assert b.get("/account/security").status == 303  # a page: to the MFA page
    # Identity itself refuses the steps for this session (not only the gateway).
    session_id = b.get("/api/v1/session").json()["id"]
    stub = mgrpc.MfaServiceStub(system.channel("identity", "gateway"))
    actor = [*md(slug), ("x-ontrack-actor", f"user:{_user_id_of(full)}")]
    for call in (
        lambda: stub.BeginTotp(mpb.BeginTotpRequest(session_id=session_id), metadata=actor),
        lambda: stub.BeginPasskeyRegistration(
            mpb.PasskeyBegin(session_id=session_id, origin=full.origin), metadata=actor
        ),
        lambda: stub.RegenerateRecoveryCodes(
            mpb.MfaSessionRef(session_id=session_id), metadata=actor
        ),
        lambda: stub.RemovePasskey(
            mpb.PasskeyChange(session_id=session_id, passkey_id=passkey), metadata=actor
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION, err.value
    after = full.get("/api/v1/mfa").json()
    assert (after["totp"], after["passkeys"], after["recovery_codes_left"]) == (
        before["totp"],
        before["passkeys"],
        before["recovery_codes_left"],
    )


def _user_id_of(b: Browser) -> str:
    return b.get("/api/v1/session").json()["user"]["id"]


def test_a_held_session_reaches_nothing_but_the_mfa_operations(system, channels, gateway, smtp):
    slug, email, user_id, _, _, _ = _tenant_with_totp_owner(system, channels, gateway, smtp)
    b = _step_up_browser(gateway, slug, email)
    csrf = b.csrf()
    for method, path, body in (
        ("GET", "/api/v1/users", None),
        ("GET", "/admin/api/v1/signin-policy", None),
        ("PUT", "/admin/api/v1/signin-policy", {"mfa_policy": "off"}),
        ("GET", "/admin/api/v1/sessions", None),
        ("DELETE", f"/admin/api/v1/users/{user_id}/sessions", None),
        ("POST", f"/admin/api/v1/users/{user_id}/mfa/reset", None),
        ("GET", "/api/v1/audit", None),
    ):
        r = b.get(path) if method == "GET" else b.send_json(method, path, body, csrf=csrf)
        assert r.status == 403 and r.json()["type"] == MFA_REQUIRED_TYPE, (method, path, r)
    assert b.get("/").status in (303, 404)
    assert _policy_of(system, slug).mfa_policy == "everyone"
    # Signing out works while held.
    assert b.send_json("POST", "/auth/logout", csrf=csrf).status == 204


def _policy_of(system, slug):
    return ssgrpc.SessionServiceStub(cli(system)).GetSignInPolicy(
        sspb.GetSignInPolicyRequest(), metadata=cli_md(slug), timeout=10
    )


# -- sound: races ---------------------------------------------------------------------------


def test_the_same_totp_code_raced_in_several_sessions_is_accepted_once(
    system, channels, gateway, smtp
):
    slug, email, _, secret, _, _ = _tenant_with_totp_owner(system, channels, gateway, smtp)
    browsers = [_step_up_browser(gateway, slug, email) for _ in range(4)]
    prepared = [(b, b.csrf(), b.jar[SESSION_COOKIE]) for b in browsers]
    code = _code(secret, 1)
    answers = _together(
        [
            (lambda b=b, c=c, k=k: _post_json(b, "/api/v1/mfa/verify", {"code": code}, c, k))
            for b, c, k in prepared
        ]
    )
    assert sorted(a.status for a in answers) == [200, 400, 400, 400], answers


def test_the_same_recovery_code_raced_in_several_sessions_is_accepted_once(
    system, channels, gateway, smtp
):
    slug, email, _, _, codes, _ = _tenant_with_totp_owner(system, channels, gateway, smtp)
    browsers = [_step_up_browser(gateway, slug, email) for _ in range(4)]
    prepared = [(b, b.csrf(), b.jar[SESSION_COOKIE]) for b in browsers]
    answers = _together(
        [
            (lambda b=b, c=c, k=k: _post_json(b, "/api/v1/mfa/recovery", {"code": codes[3]}, c, k))
            for b, c, k in prepared
        ]
    )
    assert sorted(a.status for a in answers) == [200, 400, 400, 400], answers


def test_the_last_two_factors_removed_at_once_leave_one(system, channels, gateway, smtp):
    """Removing a factor is refused when it is the last while the policy requires MFA.
    Two removals at once (TOTP and the passkey) must not both go through."""

    def add_passkey(b):
        assert _register(b, SoftAuthenticator(), "Laptop").status == 200

    slug, email, _, secret, _, b = _tenant_with_totp_owner(
        system, channels, gateway, smtp, before_policy=add_passkey
    )
    stepped = b.send_json("POST", "/api/v1/mfa/verify", {"code": _code(secret, 1)})
    assert stepped.status == 200 and _stage(b) == "full", stepped
    passkey = b.get("/api/v1/mfa").json()["passkeys"][0]["id"]
    csrf, cookie = b.csrf(), b.jar[SESSION_COOKIE]

    def delete(target):
        headers = [
            ("Origin", b.origin),
            ("X-CSRF-Token", csrf),
            ("Cookie", f"{SESSION_COOKIE}={cookie}"),
        ]
        return raw(
            b.gateway.port,
            request_bytes("DELETE", target, b.host, headers, b"", close=True),
            source=b.source,
        )

    answers = _together(
        [lambda: delete("/api/v1/mfa/totp"), lambda: delete(f"/api/v1/mfa/passkeys/{passkey}")]
    )
    status = b.get("/api/v1/mfa").json()
    left = int(status["totp"]) + len([p for p in status["passkeys"] if not p["flagged"]])
    assert left >= 1, (
        f"both removals went through ({[a.status for a in answers]}): no factor left while "
        "the policy requires MFA"
    )


# -- sound: WebAuthn challenges, origins, tenants -------------------------------------------


def _signin_options(gateway, slug, headers=()):
    b = Browser(gateway, slug)
    r = b._send("POST", "/api/v1/signin/passkey/options", [("Origin", b.origin), *headers])
    assert r.status == 200, r
    return b, r.json()


def _finish_signin(b: Browser, challenge_id: str, assertion: str):
    return _post_sign_in(b, challenge_id, json.loads(assertion))


def test_a_passwordless_challenge_is_good_in_its_own_browser_only(system, channels, gateway, smtp):
    slug, email, _, full = _owner_signed_in(system, channels, gateway, smtp)
    auth = SoftAuthenticator()
    assert _register(full, auth).status == 200

    victim, opts = _signin_options(gateway, slug)  # the browser that asked
    assertion = auth.authenticate(json.dumps(opts["options"]), origin=victim.origin)
    other = Browser(gateway, slug)  # no binding cookie
    assert _finish_signin(other, opts["challenge_id"], assertion).status == 403
    third, _ = _signin_options(gateway, slug)  # a binding cookie of its own
    assert _finish_signin(third, opts["challenge_id"], assertion).status == 403
    binding = victim.jar[PASSKEY_BINDING_COOKIE]
    # Tried (and refused) from other browsers, the challenge is not used up for its own
    # (another browser can neither use nor burn it); once used, it is gone.
    assert _finish_signin(victim, opts["challenge_id"], assertion).status == 200
    victim.jar[PASSKEY_BINDING_COOKIE] = binding
    assert _finish_signin(victim, opts["challenge_id"], assertion).status == 403


def test_a_step_up_challenge_is_good_for_its_own_session_only(system, channels, gateway, smtp):
    slug, email, _, full = _owner_signed_in(system, channels, gateway, smtp)
    auth = SoftAuthenticator()
    assert _register(full, auth).status == 200
    full_opts = full.send_json("POST", "/api/v1/mfa/passkeys/options").json()
    _policy(system, slug, mfa_policy="everyone")
    a = _step_up_browser(gateway, slug, email)
    b = _step_up_browser(gateway, slug, email)
    opts = a.send_json("POST", "/api/v1/mfa/passkeys/step-up/options").json()
    assertion = json.loads(auth.authenticate(json.dumps(opts["options"]), origin=a.origin))
    body = {"challenge_id": opts["challenge_id"], "credential": assertion}
    stolen = b.send_json("POST", "/api/v1/mfa/passkeys/step-up", body)
    assert stolen.status == 400 and _stage(b) == "step_up", stolen
    # A registration challenge (of another session) is not a step-up challenge either.
    other = b.send_json(
        "POST",
        "/api/v1/mfa/passkeys/step-up",
        {"challenge_id": full_opts["challenge_id"], "credential": assertion},
    )
    assert other.status == 400 and _stage(b) == "step_up", other


def test_a_passkey_of_one_tenant_is_useless_at_another(system, channels, gateway, smtp):
    """The attacker controls tenant X and registers a passkey there; at tenant Y a
    malicious authenticator signs for Y's RP id and origin with that key: refused (the
    credential is X's). The RP id in the options is the tenant's canonical host whatever
    X-Forwarded-Host says."""
    evil = unique("mx")
    create_tenant(channels, evil)
    evil_email, _ = owner(system, gateway, smtp, evil)
    e = Browser(gateway, evil)
    assert e.sign_in(evil_email, PASSWORD).status == 303
    auth = SoftAuthenticator()
    assert _register(e, auth).status == 200

    victim = unique("mx")
    create_tenant(channels, victim)
    owner(system, gateway, smtp, victim)
    b, opts = _signin_options(gateway, victim, [("X-Forwarded-Host", f"{evil}.localhost")])
    rp_id = urlsplit(b.origin).hostname
    assert opts["options"]["rpId"] == rp_id, opts
    auth.rp_id = rp_id  # a malicious authenticator answers for any RP id
    r = _finish_signin(
        b, opts["challenge_id"], auth.authenticate(json.dumps(opts["options"]), origin=b.origin)
    )
    assert r.status == 403, r
    # The same key's assertion for X, replayed at Y, is refused too.
    auth.rp_id = urlsplit(e.origin).hostname
    b2, opts2 = _signin_options(gateway, victim)
    x_opts = dict(opts2["options"], rpId=auth.rp_id)
    r2 = _finish_signin(
        b2, opts2["challenge_id"], auth.authenticate(json.dumps(x_opts), origin=e.origin)
    )
    assert r2.status == 403, r2


# -- sound: secrets and hostile input -------------------------------------------------------


def test_no_secret_in_the_audit_trail_or_the_logs(system, channels, gateway, smtp, run_dir):
    slug, _, _, secret, codes, b = _tenant_with_totp_owner(
        system, channels, gateway, smtp, policy="off"
    )
    regenerated = b.send_json("POST", "/api/v1/mfa/recovery-codes").json()["codes"]
    entries = _audit(channels, slug)
    assert entries
    text = "\n".join(f"{e.old_json}\n{e.new_json}" for e in entries)
    needles = [secret, *codes, *regenerated, *(c.replace("-", "") for c in codes)]
    assert not [n for n in needles if n in text]
    logged = [
        p.name
        for p in run_dir.rglob("*")
        if p.is_file() and p.stat().st_size < 50_000_000
        for n in needles[:3]
        if n in p.read_text(errors="replace")
    ]
    assert not logged, logged


HOSTILE = [
    ("POST", "/api/v1/mfa/verify", {"code": "1" * 64}),
    ("POST", "/api/v1/mfa/recovery", {"code": "\u0000" * 12}),
    ("POST", "/api/v1/mfa/recovery", {"code": "k" * 64}),
    ("POST", "/api/v1/mfa/totp/confirm", {"code": "12345\u0666"}),
    (
        "POST",
        "/api/v1/mfa/passkeys",
        {
            "challenge_id": "00000000-0000-4000-8000-000000000000",
            "credential": {"type": "public-key", "id": "", "rawId": ""},
            "name": "\u202e",
        },
    ),
    (
        "POST",
        "/api/v1/mfa/passkeys/step-up",
        {"challenge_id": "00000000-0000-4000-8000-000000000000", "credential": {"response": []}},
    ),
    ("PATCH", "/api/v1/mfa/passkeys/00000000-0000-4000-8000-000000000000", {"name": "\n"}),
    ("PATCH", "/api/v1/mfa/passkeys/00000000-0000-4000-8000-000000000000", {"name": "ok"}),
    ("DELETE", "/api/v1/mfa/passkeys/00000000-0000-4000-8000-000000000000", None),
    ("POST", "/admin/api/v1/users/00000000-0000-4000-8000-000000000000/mfa/reset", None),
    ("POST", "/api/v1/mfa/totp", {"fresh": "yes"}),
]


def test_hostile_input_to_the_mfa_endpoints_is_never_a_500(system, channels, gateway, smtp):
    slug, email, _, _, _, full = _tenant_with_totp_owner(
        system, channels, gateway, smtp, policy="off"
    )
    for stage in ("full", "step_up"):
        if stage == "step_up":
            _policy(system, slug, mfa_policy="everyone")
        b = full if stage == "full" else _step_up_browser(gateway, slug, email)
        assert _stage(b) == stage
        csrf = b.csrf()
        for method, path, body in HOSTILE:
            r = b.send_json(method, path, body, csrf=csrf)
            while r.status == 429:
                time.sleep(float(r.headers["retry-after"]))
                r = b.send_json(method, path, body, csrf=csrf)
            assert r.status < 500, (method, path, body, r)


def test_an_idp_session_is_judged_again_when_its_evidence_stops_counting(
    gateway, channels, oidc_provider
):
    """docs/mfa.md: a change of ``mfa_evidence`` emits the revocation event "so every
    gateway ... sees the new stage". A live session whose only MFA was an IdP value the
    tenant no longer accepts must be held again, not stay full."""
    from tests.e2e.test_oidc_signin import Flow, new_tenant, person

    t = new_tenant(gateway, channels, oidc_provider, "oidc")
    f = Flow(gateway, channels, oidc_provider, t)
    policies = ssgrpc.SessionServiceStub(channels["identity"])
    policies.SetSignInPolicy(
        sspb.SignInPolicy(mfa_policy="everyone", jit_provisioning=True), metadata=md(t.slug)
    )
    signed = f.sign_in(person(t, claims={"amr": ["pwd", "mfa"]}))
    me = f.session(signed)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "idp", "mfa")
    cookie = [("Cookie", f"{SESSION_COOKIE}={signed.cookie(SESSION_COOKIE)}")]
    assert f.get("/api/v1/users", cookie).status == 200

    stricter = sspb.SignInPolicy(mfa_evidence=sspb.MfaEvidence(), jit_provisioning=True)
    stricter.mfa_evidence.by_kind["oidc:oidc"].values.append("urn:example:acr:mfa")
    policies.SetSignInPolicy(stricter, metadata=md(t.slug))

    def held():
        stage = f.get("/api/v1/session", cookie).json()["stage"]
        users = f.get("/api/v1/users", cookie).status
        assert stage != "full" and users == 403, (
            f"the session kept stage {stage} (/api/v1/users {users}) on evidence no longer accepted"
        )

    eventually_passes(held, timeout=10)
