"""The MFA facts evidence reports for a tenant as of a time (NIS2 Art. 21(2)(j)): how many
active users and admins have a second factor, of which kind, and how the sign-ins of the 30
days up to that time proved MFA. One SQL statement on identity's tenant database, exact
counts (no sampling, no loop over rows here).

"As of" ``as_of`` means, for what the tables date:

- a user counts if active and created at or before ``as_of``; an admin if such a user holds
  the role owner or admin (roles/rules.py) granted at or before ``as_of``;
- a TOTP counts once confirmed at or before ``as_of`` (an unconfirmed set-up never does);
- a passkey counts if created at or before ``as_of`` and not flagged (a cloned authenticator:
  passkeys.py) at or before ``as_of``; one flagged later still counts for earlier dates;
- a sign-in is a session created in the 30 days up to ``as_of`` (``created_at > as_of - 30
  days AND created_at <= as_of``, 30 days being 720 hours) at the ``full`` stage: a session
  opened at ``step_up`` or ``enrol`` is no sign-in by itself, and a step-up's replacement
  session (stage ``full``) counts under the source it ended with (``local``).

The limits of that, stated plainly: the tables hold current state, not history.

- Removed factors are deleted rows (RemoveTotp, RemovePasskey, an admin's reset): a removed
  factor no longer counts for earlier dates either, so a report for a past date can show
  fewer enrolled users and factors than were there on that date. Likewise a revoked role
  (its row deleted) no longer counts, a role granted again counts from its new grant.
- ``users.active`` is the current flag: a user deactivated since ``as_of`` is left out, a
  user reactivated since is counted, for every date.
- ``policy`` is the tenant's current MFA policy (signin_policy.mfa_policy), not the one in
  force at ``as_of``; the audit trail records its changes.

Sign-ins are counted whoever made them (a user deactivated since still signed in then).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.mfa import policy as mfa_rules
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.signin.external import MFA_IDP, MFA_LOCAL, MFA_NONE

SIGN_IN_WINDOW = timedelta(days=30)
MFA_SOURCES = (MFA_IDP, MFA_LOCAL, MFA_NONE)
ADMIN_ROLES = (roles.OWNER, roles.ADMIN)

_FACTS = """
WITH people AS (
    SELECT x.id,
           EXISTS (SELECT 1 FROM user_roles r
                    WHERE r.user_id = x.id AND r.role = ANY(%(admin_roles)s)
                      AND r.granted_at <= %(as_of)s) AS admin,
           (SELECT count(*) FROM mfa_totp t
             WHERE t.user_id = x.id AND t.confirmed_at <= %(as_of)s) AS totps,
           (SELECT count(*) FROM mfa_passkeys p
             WHERE p.user_id = x.id AND p.created_at <= %(as_of)s
               AND (p.flagged_at IS NULL OR p.flagged_at > %(as_of)s)) AS passkeys
      FROM users x
     WHERE x.active AND x.created_at <= %(as_of)s
), sign_ins AS (
    SELECT src, count(s.id) AS n
      FROM unnest(%(sources)s::text[]) AS src
      LEFT JOIN sessions s
        ON s.mfa_source = src AND s.stage = %(full)s
       AND s.created_at > %(since)s AND s.created_at <= %(as_of)s
     GROUP BY src
)
SELECT (SELECT mfa_policy FROM signin_policy),
       count(*),
       count(*) FILTER (WHERE totps + passkeys > 0),
       count(*) FILTER (WHERE admin),
       count(*) FILTER (WHERE admin AND totps + passkeys > 0),
       count(*) FILTER (WHERE passkeys > 0),
       coalesce(sum(totps + passkeys), 0)::bigint,
       coalesce(sum(passkeys), 0)::bigint,
       (SELECT jsonb_object_agg(src, n) FROM sign_ins),
       (SELECT sum(n) FROM sign_ins)::bigint
  FROM people
"""


def facts(u: UnitOfWork, as_of: datetime) -> dict[str, Any]:
    """The tenant's MFA facts as of `as_of` (an aware datetime; ValueError if naive), as the
    module docstring defines them:

    - ``policy``: the current MFA policy (off | admins | everyone), not the one at `as_of`;
    - ``active_users``: active users created at or before `as_of`;
    - ``users_enrolled``: of those, with a TOTP confirmed or an unflagged passkey, as of;
    - ``admins`` / ``admins_enrolled``: those of them holding owner or admin (granted at or
      before `as_of`), and of these the enrolled;
    - ``users_with_passkey``: active users with an unflagged passkey (phishing-resistant);
    - ``factors``: their confirmed TOTPs plus unflagged passkeys; ``passkey_factors``: the
      passkeys alone;
    - ``sign_ins_by_mfa_source``: ``full``-stage sessions created in the 30 days up to
      `as_of` (``created_at > as_of - 30 days AND created_at <= as_of``) by mfa_source, each
      of idp, local and none present (0 when none); ``sign_ins``: their total.

    Removed factors and roles are deleted rows: they no longer count for earlier dates
    either (see the module docstring for this and the other limits)."""
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be an aware datetime")
    row = u.conn.execute(
        _FACTS,
        {
            "as_of": as_of,
            "since": as_of - SIGN_IN_WINDOW,
            "admin_roles": list(ADMIN_ROLES),
            "sources": list(MFA_SOURCES),
            "full": mfa_rules.FULL,
        },
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY: always one row
    (policy, active, enrolled, admins, admins_enrolled, with_passkey, factors, passkeys) = row[:8]
    by_source, sign_ins = row[8], row[9]
    return {
        "policy": policy if policy is not None else mfa_rules.OFF,
        "active_users": active,
        "users_enrolled": enrolled,
        "admins": admins,
        "admins_enrolled": admins_enrolled,
        "users_with_passkey": with_passkey,
        "factors": factors,
        "passkey_factors": passkeys,
        "sign_ins_by_mfa_source": dict(by_source),
        "sign_ins": sign_ins,
    }
