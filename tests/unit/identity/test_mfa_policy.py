"""The org MFA policy's rules (identity/mfa/policy.py): who it covers, what IdP evidence
counts, and the stage a new session opens at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ontrackio.identity.errors import InvalidMfaPolicy, MfaEnrolmentOverdue
from ontrackio.identity.mfa import policy as p

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "roles", "covered"),
    [
        ("off", ["owner"], False),
        ("admins", ["owner"], True),
        ("admins", ["admin", "member"], True),
        ("admins", ["member"], False),
        ("admins", ["auditor"], False),
        ("admins", [], False),
        ("everyone", ["auditor"], True),
        ("everyone", [], True),
    ],
)
def test_who_the_policy_covers(policy, roles, covered):
    assert p.requires_mfa(policy, roles) is covered


def test_idp_evidence_counts_by_the_tenants_list_else_the_defaults():
    assert p.idp_proves_mfa("saml", [p.ENTRA_MULTIPLEAUTHN], {})
    assert not p.idp_proves_mfa("saml", ["urn:...:PasswordProtectedTransport"], {})
    assert p.idp_proves_mfa("oidc:entra", ["pwd", "mfa"], {})
    assert not p.idp_proves_mfa("oidc:entra", ["pwd"], {})
    custom = {"saml": ["urn:example:mfa"]}
    assert p.idp_proves_mfa("saml", ["urn:example:mfa"], custom)
    assert not p.idp_proves_mfa("saml", [p.ENTRA_MULTIPLEAUTHN], custom)  # replaced, not added
    assert not p.idp_proves_mfa("saml", [p.ENTRA_MULTIPLEAUTHN], {"saml": []})  # always step up
    assert not p.idp_proves_mfa("unknown", ["mfa"], {})


def test_the_stage_a_session_opens_at():
    def stage(policy="admins", roles=("admin",), **kw):
        args = {"mfa_proven": False, "has_factor": True, "grace_until": None, "now": NOW}
        args.update(kw)
        return p.stage_at_sign_in(policy, roles, **args)

    assert stage(policy="off") == p.FULL
    assert stage(roles=("member",)) == p.FULL
    assert stage(mfa_proven=True) == p.FULL
    assert stage() == p.STEP_UP
    assert stage(has_factor=False, grace_until=NOW + timedelta(days=1)) == p.ENROL
    with pytest.raises(MfaEnrolmentOverdue) as info:
        stage(has_factor=False, grace_until=NOW)
    assert info.value.why == p.ENROLMENT_OVERDUE
    with pytest.raises(MfaEnrolmentOverdue):
        stage(has_factor=False, grace_until=None)


def test_policy_values_are_validated():
    assert p.validate_policy("everyone") == "everyone"
    for bad in ("Everyone", "", "all", None):
        with pytest.raises(InvalidMfaPolicy):
            p.validate_policy(bad)
    assert p.validate_grace_days(0) == 0
    for bad in (-1, p.MAX_GRACE_DAYS + 1, True, 1.5):
        with pytest.raises(InvalidMfaPolicy):
            p.validate_grace_days(bad)
    assert p.validate_evidence("saml", [" a ", "a", "b"]) == ("a", "b")
    for bad in (
        ["x" * (p.MAX_EVIDENCE_CHARS + 1)],
        ["a\nb"],
        [""],
        ["v"] * 0 + [str(i) for i in range(p.MAX_EVIDENCE_VALUES + 1)],
    ):
        with pytest.raises(InvalidMfaPolicy):
            p.validate_evidence("saml", bad)
    with pytest.raises(InvalidMfaPolicy):
        p.validate_evidence("ldap", [])
