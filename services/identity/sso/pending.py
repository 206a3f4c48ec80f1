"""A budget for pending SSO logins: the rows a public login endpoint writes before anyone
has authenticated (an OIDC login started: ``oidc_logins``; a SAML AuthnRequest issued:
``saml_requests``).

Anyone can call those endpoints, so the budget is per client (``client_key``: the address,
an IPv6 /64; signin/throttle_rules.address_key): past ``per_client`` live rows that client is
refused (``TooManyPendingLogins``, a 429), and nobody else notices. The tenant-wide cap
(``per_tenant``) keeps the table bounded against many clients at once by evicting the
oldest pending logins rather than refusing new ones: a flood from many addresses then costs
the people caught in it a retry, not the tenant its sign-in. Expired rows go first, a
bounded number per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.errors import TooManyPendingLogins

SWEEP_ROWS = 100


@dataclass(frozen=True)
class Budget:
    per_client: int
    per_tenant: int


def make_room(
    u: UnitOfWork, table: str, client_key: str, budget: Budget, *, purpose: str | None = None
) -> None:
    """Before a new pending row of ``client_key`` in ``table``: sweep expired rows (bounded),
    refuse the client past its budget, evict the oldest rows past the tenant's. With
    ``purpose``, the budgets count (and eviction takes) only the rows of that ``purpose``:
    anonymous sign-ins sharing a table with signed-in users' rows (mfa_challenges) cannot
    evict theirs."""
    t = sql.Identifier(table)
    scope, args = (sql.SQL(" AND purpose = %s"), (purpose,)) if purpose else (sql.SQL(""), ())
    u.conn.execute(
        sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t}"
            " WHERE expires_at <= now() LIMIT {n}))"
        ).format(t=t, n=sql.Literal(SWEEP_ROWS))
    )
    mine = u.conn.execute(
        sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM {t} WHERE client_key = %s{scope}"
            " AND expires_at > now() LIMIT %s) AS live"
        ).format(t=t, scope=scope),
        (client_key, *args, budget.per_client),
    ).fetchone()[0]
    if mine >= budget.per_client:
        raise TooManyPendingLogins("too many sign-ins in progress; try again in a few minutes")
    u.conn.execute(
        sql.SQL(
            "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE true{scope}"
            " ORDER BY created_at DESC OFFSET %s LIMIT {n}))"
        ).format(t=t, scope=scope, n=sql.Literal(SWEEP_ROWS)),
        (*args, budget.per_tenant - 1),
    )
