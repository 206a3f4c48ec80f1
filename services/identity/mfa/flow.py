"""MFA steps of one tenant's users: enrolling and removing factors, stepping a session up,
passwordless passkey sign-in, an admin's reset. Each step runs in one transaction of the
tenant's database; the rules are the pure modules (policy, totp, recovery, passkeys) and
the rows are ``store``'s.

Stages (mfa/policy.py): a session at ``step_up`` may only present a factor (TOTP, passkey,
recovery code); one at ``enrol`` may only set one up; a ``full`` session manages its
factors. A step that completes a held session rotates it (sessions.rotate: a new cookie,
``mfa_source = local`` and the factor used). A wrong code or passkey at a held session is
audited (``mfa.failed``) and counted; at ``MAX_FAILURES`` the session ends. Wrong codes are
answers (``accepted = False``), not errors, so their audit entries and counters commit.

An admin may reset another user's factors only from a session that began (or stepped up)
within ``RECENT_AUTH_SECONDS``: a session left open on a desk is not enough to strip a
colleague's MFA.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.identity.errors import (
    InvalidPasskey,
    MfaFactorRequired,
    MfaStageRequired,
    PasskeyCloned,
    PasskeyNotFound,
    PasskeyRefused,
    RecentSignInRequired,
    SignInRefused,
    UserNotFound,
)
from ontrackio.identity.mfa import passkeys, recovery, store, totp
from ontrackio.identity.mfa import policy as rules
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.signin import policy as signin_policy
from ontrackio.identity.signin import sso, throttle, throttle_rules
from ontrackio.identity.signin.external import MFA_LOCAL
from ontrackio.identity.signin.throttle_rules import address_key
from ontrackio.identity.sso import pending

MAX_FAILURES = 5
RECENT_AUTH_SECONDS = 5 * 60
# A user whose factors an admin reset has the policy's grace, at least this, from the reset
# to set one up again (a reset past the tenant's grace must not lock them out).
RESET_ENROL_DAYS_MIN = 1
METHOD_PASSKEY = "passkey"
_BINDING_PURPOSE = b"webauthn sign-in binding:"

# Reasons a passwordless sign-in is refused (the audit trail's).
NO_CHALLENGE = "challenge-unknown-used-or-expired"
UNKNOWN_CREDENTIAL = "unknown-credential"
FLAGGED = "credential-flagged"
WRONG_USER_HANDLE = "user-handle-mismatch"
INACTIVE = "inactive"
SSO_REQUIRED = "sso-required"


@dataclass
class StepResult:
    accepted: bool
    grant: Any = None
    recovery_codes: list[str] = field(default_factory=list)
    recovery_codes_left: int = 0
    session_ended: bool = False
    stage: str = rules.FULL
    locked_until: datetime | None = None


@dataclass(frozen=True)
class _StepUpLock:
    """A user's step-up failure counter as read (locked) in this transaction, the lockout
    rule it is judged by, and the time it was read at."""

    counter: throttle_rules.Counter
    policy: throttle_rules.Policy
    now: datetime


class MfaFlow:
    """MFA for every tenant of one identity process (``rt``: its runtime)."""

    def __init__(self, rt: Any, clock=time.time) -> None:
        s = rt.settings
        self.rt = rt
        self.key = s.token_hash_key.get_secret_value().encode()
        self.recovery_key = recovery.derive_key(self.key)
        self.budget = pending.Budget(
            s.sso_pending_logins_per_client, s.sso_pending_logins_per_tenant
        )
        self.clock = clock

    def _uow(self, info: TenantInfo):
        return self.rt.dbs.unit_of_work(info)

    def _seal(self, info: TenantInfo) -> store.Seal:
        return lambda user_id, value: self.rt.fields.encrypt_text(
            info, *store.TOTP_SECRET, user_id, value
        )

    def _unseal(self, info: TenantInfo) -> store.Unseal:
        return lambda user_id, blob: self.rt.fields.decrypt_text(
            info, *store.TOTP_SECRET, user_id, blob
        )

    # -- the session a step acts on ---------------------------------------------------------

    def _session(self, u: UnitOfWork, session_id: str, user_id: str, *stages: str) -> dict:
        """The caller's own live session with its stage as judged now; MfaStageRequired when
        that is not one of ``stages``."""
        # Locked: one step of a session at a time; its stage as the policy sees it now.
        row = sessions.get(u, session_id, user_id, lock=True)
        if stages and row["stage"] not in stages:
            raise MfaStageRequired(f"this step is not for a session at stage {row['stage']!r}")
        return row

    def _required(self, u: UnitOfWork, user_id: str, p: dict | None = None) -> bool:
        p = p or signin_policy.load(u)
        return rules.requires_mfa(p["mfa_policy"], role_store.roles_of(u, user_id))

    def _complete(
        self, u: UnitOfWork, row: dict, factor: str, *, first: bool, result: StepResult
    ) -> StepResult:
        """After a factor was proven or set up: a held session becomes full (rotated), a
        first factor brings recovery codes."""
        user_id = str(row["user_id"])
        if first:
            result.recovery_codes = store.new_recovery_codes(
                u, user_id, self.recovery_key, session_rules.user_actor(user_id)
            )
            result.recovery_codes_left = len(result.recovery_codes)
        if row["stage"] != rules.FULL:
            throttle.clear_account(u, user_id, throttle.STEP_UPS)
            store.audit(
                u,
                session_rules.user_actor(user_id),
                "mfa.step_up",
                user_id,
                {"factor": factor, "from_stage": row["stage"], "session": row["id"]},
            )
            result.grant = sessions.rotate(
                u,
                self.key,
                row["id"],
                user_id,
                mfa_source=MFA_LOCAL,
                factor=factor,
                stage=rules.FULL,
            )
        result.stage = rules.FULL
        return result

    def _step_up_lock(self, u: UnitOfWork, user_id: str) -> _StepUpLock:
        """The user's step-up failure counter, locked for this transaction (every session of
        the user is judged one step-up at a time)."""
        p = signin_policy.load(u)
        return _StepUpLock(
            throttle.current(u, throttle.STEP_UPS, user_id),
            throttle_rules.account_policy(p["lockout_threshold"], p["lockout_seconds"]),
            datetime.now(UTC),
        )

    def _locked_out(self, u: UnitOfWork, row: dict, factor: str, lock: _StepUpLock):
        """The answer to a step-up while the user's step-ups are locked (no factor judged:
        a right code then tells nothing), else None."""
        if not lock.policy.locked(lock.counter, lock.now):
            return None
        result = self._failed(u, row, factor, reason="locked")
        result.locked_until = lock.counter.locked_until
        return result

    def _failed(
        self,
        u: UnitOfWork,
        row: dict,
        factor: str,
        lock: _StepUpLock | None = None,
        reason: str = "wrong",
    ) -> StepResult:
        """A wrong factor: audited, counted against a held session (ended at MAX_FAILURES)
        and, at a step-up (``lock``), against the user across their sessions: the sign-in
        policy's lockout threshold locks their step-ups for its lockout time (audited
        ``mfa.locked``), however many sessions a password opens."""
        user_id = str(row["user_id"])
        store.audit(
            u,
            session_rules.user_actor(user_id),
            "mfa.failed",
            user_id,
            {"factor": factor, "stage": row["stage"], "session": row["id"], "reason": reason},
            outcome="refused",
        )
        locked_until = None
        if lock is not None:
            after = throttle.failed(
                u, throttle.STEP_UPS, user_id, lock.counter, lock.policy, lock.now
            )
            if lock.policy.locked(after, lock.now):
                locked_until = after.locked_until
                store.audit(
                    u,
                    "system",
                    "mfa.locked",
                    user_id,
                    {"failures": after.failures, "until": after.locked_until.isoformat()},
                )
        ended = False
        if row["stage"] != rules.FULL:
            ended = sessions.record_mfa_failure(u, row["id"], MAX_FAILURES)
        return StepResult(
            accepted=False, session_ended=ended, stage=row["stage"], locked_until=locked_until
        )

    # -- status -----------------------------------------------------------------------------

    def status(self, info: TenantInfo, session_id: str, user_id: str) -> dict[str, Any]:
        with self._uow(info) as u:
            return self._status(u, session_id, user_id)

    def _status(self, u: UnitOfWork, session_id: str, user_id: str) -> dict[str, Any]:
        row = self._session(u, session_id, user_id)
        p = signin_policy.load(u)
        out = store.summary(u, user_id)
        out.update(
            stage=row["stage"],
            required=self._required(u, user_id, p),
            policy=p["mfa_policy"],
            mfa_source=row["mfa_source"],
            factor=row["factor"],
            enrol_by=sessions.grace_until(u, p, user_id) if row["stage"] == rules.ENROL else None,
        )
        return out

    # -- TOTP -------------------------------------------------------------------------------

    def begin_totp(
        self, info: TenantInfo, session_id: str, user_id: str, *, fresh: bool = False
    ) -> dict[str, str]:
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL, rules.ENROL)
            email = u.conn.execute("SELECT email FROM users WHERE id = %s", (user_id,)).fetchone()
            if email is None:
                raise UserNotFound("user not found")
            secret = store.begin_totp(
                u,
                user_id,
                session_id,
                self._seal(info),
                self._unseal(info),
                session_rules.user_actor(user_id),
                fresh=fresh,
            )
        uri = totp.provisioning_uri(secret, email[0])
        return {"secret": secret, "uri": uri, "qr_svg": totp.qr_svg(uri)}

    def confirm_totp(
        self, info: TenantInfo, session_id: str, user_id: str, code: str
    ) -> StepResult:
        with self._uow(info) as u:
            row = self._session(u, session_id, user_id, rules.FULL, rules.ENROL)
            first = not store.has_factor(u, user_id)
            unseal = self._unseal(info)
            if not store.confirm_totp(u, user_id, session_id, code, unseal, self.clock()):
                return self._failed(u, row, store.TOTP)
            store.audit(u, session_rules.user_actor(user_id), "mfa.totp.enrol", user_id)
            return self._complete(u, row, store.TOTP, first=first, result=StepResult(True))

    def verify_totp(self, info: TenantInfo, session_id: str, user_id: str, code: str) -> StepResult:
        with self._uow(info) as u:
            row = self._session(u, session_id, user_id, rules.STEP_UP)
            lock = self._step_up_lock(u, user_id)
            if locked := self._locked_out(u, row, store.TOTP, lock):
                return locked
            if not store.verify_totp(u, user_id, code, self._unseal(info), self.clock()):
                return self._failed(u, row, store.TOTP, lock)
            return self._complete(u, row, store.TOTP, first=False, result=StepResult(True))

    def remove_totp(self, info: TenantInfo, session_id: str, user_id: str) -> dict[str, Any]:
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL)
            store.lock_factors(u, user_id)
            store.remove_totp(u, user_id, session_rules.user_actor(user_id))
            self._keep_one(u, user_id)
            return self._status(u, session_id, user_id)

    def _keep_one(self, u: UnitOfWork, user_id: str) -> None:
        """After a removal in this transaction: refuse it (rolled back) when it took the
        user's last factor while the policy requires MFA of them."""
        if self._required(u, user_id) and not store.has_factor(u, user_id):
            raise MfaFactorRequired(
                "your organisation requires MFA: set up another factor before removing this one"
            )

    # -- recovery codes ---------------------------------------------------------------------

    def use_recovery_code(
        self, info: TenantInfo, session_id: str, user_id: str, code: str
    ) -> StepResult:
        with self._uow(info) as u:
            row = self._session(u, session_id, user_id, rules.STEP_UP)
            lock = self._step_up_lock(u, user_id)
            if locked := self._locked_out(u, row, store.RECOVERY_CODE, lock):
                return locked
            left = store.use_recovery_code(u, user_id, code, self.recovery_key)
            if left is None:
                return self._failed(u, row, store.RECOVERY_CODE, lock)
            store.audit(
                u,
                session_rules.user_actor(user_id),
                "mfa.recovery_code.use",
                user_id,
                {"left": left},
            )
            result = self._complete(
                u, row, store.RECOVERY_CODE, first=False, result=StepResult(True)
            )
            result.recovery_codes_left = left
            return result

    def regenerate_recovery_codes(
        self, info: TenantInfo, session_id: str, user_id: str
    ) -> list[str]:
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL)
            if not store.has_factor(u, user_id):
                raise MfaStageRequired("set up an authenticator app or a passkey first")
            return store.new_recovery_codes(
                u, user_id, self.recovery_key, session_rules.user_actor(user_id)
            )

    # -- passkeys ---------------------------------------------------------------------------

    @staticmethod
    def _rp(origin_url: str) -> tuple[str, str]:
        """(RP id, origin) of the tenant's canonical origin as the gateway passed it."""
        host = urlsplit(origin_url).hostname or ""
        if not host:
            raise InvalidPasskey("the origin is not a URL")
        return host, origin_url.rstrip("/")

    def _uv(self, u: UnitOfWork) -> str:
        return signin_policy.load(u)["passkey_user_verification"]

    def begin_passkey_registration(
        self, info: TenantInfo, session_id: str, user_id: str, origin_url: str
    ) -> tuple[str, str]:
        rp_id, _ = self._rp(origin_url)
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL, rules.ENROL)
            user = u.conn.execute(
                "SELECT email, display_name FROM users WHERE id = %s", (user_id,)
            ).fetchone()
            existing = store.credential_ids(u, user_id)
            if len(existing) >= passkeys.MAX_CREDENTIALS_PER_USER:
                raise MfaStageRequired(
                    f"at most {passkeys.MAX_CREDENTIALS_PER_USER} passkeys; remove one first"
                )
            options, challenge = passkeys.registration_options(
                rp_id=rp_id,
                user_handle=store.user_handle(u, user_id),
                user_name=user[0],
                display_name=user[1] or user[0],
                exclude=existing,
                user_verification=self._uv(u),
            )
            challenge_id = store.put_challenge(
                u, "register", challenge, session_id=session_id, user_id=user_id
            )
        return options, challenge_id

    def finish_passkey_registration(
        self,
        info: TenantInfo,
        session_id: str,
        user_id: str,
        origin_url: str,
        challenge_id: str,
        response_json: str,
        name: str,
    ) -> StepResult:
        rp_id, expected_origin = self._rp(origin_url)
        name = passkeys.validate_name(name)
        with self._uow(info) as u:
            row = self._session(u, session_id, user_id, rules.FULL, rules.ENROL)
            taken = store.take_challenge(u, challenge_id, "register", session_id=session_id)
            if taken is None:
                raise PasskeyRefused("start the passkey registration again", NO_CHALLENGE)
            registered = passkeys.verify_registration(
                response_json,
                challenge=bytes(taken["challenge"]),
                rp_id=rp_id,
                origin=expected_origin,
                require_user_verification=self._uv(u) == rules.UV_REQUIRED,
            )
            first = not store.has_factor(u, user_id)
            store.add_passkey(u, user_id, registered, name, session_rules.user_actor(user_id))
            return self._complete(u, row, store.PASSKEY, first=first, result=StepResult(True))

    def begin_passkey_step_up(
        self, info: TenantInfo, session_id: str, user_id: str, origin_url: str
    ) -> tuple[str, str]:
        rp_id, _ = self._rp(origin_url)
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.STEP_UP)
            allow = store.credential_ids(u, user_id)
            if not allow:
                raise MfaStageRequired("you have no passkey; use your authenticator app")
            options, challenge = passkeys.authentication_options(
                rp_id=rp_id, allow=allow, user_verification=self._uv(u)
            )
            challenge_id = store.put_challenge(
                u, "step_up", challenge, session_id=session_id, user_id=user_id
            )
        return options, challenge_id

    def _assert(
        self,
        u: UnitOfWork,
        *,
        answer: passkeys.Answer,
        challenge: bytes,
        rp_id: str,
        expected_origin: str,
        require_uv: bool,
        user_id: str | None,
    ) -> dict[str, Any] | PasskeyRefused:
        """Verify an assertion against the stored passkey; the passkey row, or the refusal
        (a clone is flagged in ``u`` first, so the flag commits with the refusal's audit)."""
        row = store.passkey_by_credential(u, answer.credential_id)
        if row is None or (user_id is not None and str(row["user_id"]) != user_id):
            return PasskeyRefused("this passkey is not registered here", UNKNOWN_CREDENTIAL)
        if row["flagged_at"] is not None:
            return PasskeyRefused("this passkey has been blocked", FLAGGED)
        try:
            asserted = passkeys.verify_authentication(
                answer,
                challenge=challenge,
                rp_id=rp_id,
                origin=expected_origin,
                public_key=bytes(row["public_key"]),
                stored_sign_count=row["sign_count"],
                require_user_verification=require_uv,
            )
        except PasskeyCloned as cloned:
            store.flag_passkey(u, row, cloned.reason)
            return cloned
        except PasskeyRefused as refused:
            return refused
        store.passkey_used(u, row["id"], asserted.new_sign_count)
        return row

    def finish_passkey_step_up(
        self,
        info: TenantInfo,
        session_id: str,
        user_id: str,
        origin_url: str,
        challenge_id: str,
        response_json: str,
    ) -> StepResult:
        rp_id, expected_origin = self._rp(origin_url)
        with self._uow(info) as u:
            row = self._session(u, session_id, user_id, rules.STEP_UP)
            lock = self._step_up_lock(u, user_id)
            if locked := self._locked_out(u, row, store.PASSKEY, lock):
                return locked
            taken = store.take_challenge(u, challenge_id, "step_up", session_id=session_id)
            if taken is None:
                return self._failed(u, row, store.PASSKEY, lock)
            found = self._assert(
                u,
                answer=passkeys.read_assertion(response_json),
                challenge=bytes(taken["challenge"]),
                rp_id=rp_id,
                expected_origin=expected_origin,
                require_uv=self._uv(u) == rules.UV_REQUIRED,
                user_id=user_id,
            )
            if isinstance(found, PasskeyRefused):
                return self._failed(u, row, store.PASSKEY, lock)
            return self._complete(u, row, store.PASSKEY, first=False, result=StepResult(True))

    def rename_passkey(
        self, info: TenantInfo, session_id: str, user_id: str, passkey_id: str, name: str
    ) -> dict[str, Any]:
        name = passkeys.validate_name(name)
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL)
            if not store.rename_passkey(
                u, user_id, _uuid(passkey_id), name, session_rules.user_actor(user_id)
            ):
                raise PasskeyNotFound("no such passkey")
            return self._status(u, session_id, user_id)

    def remove_passkey(
        self, info: TenantInfo, session_id: str, user_id: str, passkey_id: str
    ) -> dict[str, Any]:
        with self._uow(info) as u:
            self._session(u, session_id, user_id, rules.FULL)
            store.lock_factors(u, user_id)
            if not store.remove_passkey(
                u, user_id, _uuid(passkey_id), session_rules.user_actor(user_id)
            ):
                raise PasskeyNotFound("no such passkey")
            self._keep_one(u, user_id)
            return self._status(u, session_id, user_id)

    # -- passwordless sign-in ---------------------------------------------------------------

    def _binding_hash(self, binding: bytes) -> bytes:
        return hmac.new(self.key, _BINDING_PURPOSE + binding, hashlib.sha256).digest()

    def begin_passkey_sign_in(
        self, info: TenantInfo, origin_url: str, binding: bytes, client_address: str
    ) -> tuple[str, str]:
        rp_id, _ = self._rp(origin_url)
        if not 16 <= len(binding) <= 64:
            raise InvalidPasskey("the browser binding is missing")
        client_key = address_key(client_address)
        with self._uow(info) as u:
            pending.make_room(u, "mfa_challenges", client_key, self.budget, purpose="sign_in")
            options, challenge = passkeys.authentication_options(
                rp_id=rp_id, allow=[], user_verification=rules.UV_REQUIRED
            )
            challenge_id = store.put_challenge(
                u,
                "sign_in",
                challenge,
                binding_hash=self._binding_hash(binding),
                client_key=client_key,
            )
        return options, challenge_id

    def finish_passkey_sign_in(
        self,
        info: TenantInfo,
        *,
        origin_url: str,
        binding: bytes,
        challenge_id: str,
        response_json: str,
        client_address: str = "",
        user_agent: str = "",
        next: str = "/",
    ):
        """A full session (``mfa_source = local``, factor ``passkey``: a discoverable
        credential with user verification is both factors), or SignInRefused after the
        refusal has been audited (and a cloned passkey flagged)."""
        rp_id, expected_origin = self._rp(origin_url)
        with self._uow(info) as u:
            outcome = self._passwordless(
                u, rp_id, expected_origin, binding, challenge_id, response_json
            )
            if isinstance(outcome, str):
                return sessions.start(
                    u,
                    self.key,
                    user_id=outcome,
                    method=METHOD_PASSKEY,
                    mfa_source=MFA_LOCAL,
                    factor=store.PASSKEY,
                    client_address=client_address,
                    user_agent=user_agent,
                    next=next,
                )
            reason = outcome[0]
            sso.record_refusal(u, METHOD_PASSKEY, "", reason)
        raise SignInRefused(reason)

    def _passwordless(
        self,
        u: UnitOfWork,
        rp_id: str,
        expected_origin: str,
        binding: bytes,
        challenge_id: str,
        response_json: str,
    ) -> str | tuple[str]:
        """The user id signing in, or a 1-tuple with the refusal's reason."""
        taken = store.take_challenge(
            u, challenge_id, "sign_in", binding_hash=self._binding_hash(binding or b"")
        )
        if taken is None:
            return (NO_CHALLENGE,)
        answer = passkeys.read_assertion(response_json)
        found = self._assert(
            u,
            answer=answer,
            challenge=bytes(taken["challenge"]),
            rp_id=rp_id,
            expected_origin=expected_origin,
            require_uv=True,
            user_id=None,
        )
        if isinstance(found, PasskeyRefused):
            return (found.reason,)
        user_id = str(found["user_id"])
        if answer.user_handle is not None and answer.user_handle != store.user_handle(u, user_id):
            return (WRONG_USER_HANDLE,)
        if not found["active"]:
            return (INACTIVE,)
        p = signin_policy.load(u)
        if p["sso_required"] and user_id not in p["break_glass_users"]:
            return (SSO_REQUIRED,)
        return user_id

    # -- admin ------------------------------------------------------------------------------

    def reset_user(
        self, info: TenantInfo, actor: str, session_id: str, user_id: str
    ) -> dict[str, int]:
        user_id = paging.parse_id(user_id, "user_id")  # the request first: INVALID_ARGUMENT
        admin_id = session_rules.actor_user_id(actor)
        if admin_id is None:
            raise RecentSignInRequired("a signed-in admin resets factors, from their session")
        with self._uow(info) as u:
            role_store.require(u, actor, role_rules.ADMINISTER)
            row = self._session(u, session_id, admin_id, rules.FULL)
            if u.conn.execute("SELECT 1 FROM users WHERE id = %s", (user_id,)).fetchone() is None:
                raise UserNotFound("user not found")
            role_store.require_owner_for_owner(u, user_id, actor, "reset the factors of")
            since = datetime.now(UTC) - timedelta(seconds=RECENT_AUTH_SECONDS)
            if row["created_at"] < since:
                audit_log.append(
                    u.conn,
                    audit_log.Entry(
                        actor,
                        "mfa.reset",
                        f"user:{user_id}",
                        None,
                        {"reason": "re-authentication-required"},
                        outcome="refused",
                        origin=origin.current(),
                    ),
                )
                refused = True
            else:
                refused = False
                grace_days = max(signin_policy.load(u)["mfa_grace_days"], RESET_ENROL_DAYS_MIN)
                counts = store.reset(u, user_id, actor, enrol_days=grace_days)
                sessions.revoke_user(u, user_id, actor, session_rules.ENDED_MFA_RESET)
        if refused:
            raise RecentSignInRequired(
                f"sign in again (within {RECENT_AUTH_SECONDS // 60} minutes) to reset factors"
            )
        return counts


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise PasskeyNotFound("no such passkey") from None
