"""Properties of tenant slugs (core/tenancy.py), which come from operators, the Host header
and the ``x-ontrack-tenant`` metadata and become DNS labels and PostgreSQL names: accepted
exactly when an independent reading of the rule accepts (2-31 of a-z, 0-9 and -, a letter
first, no hyphen last; no folding of look-alikes or trailing newlines), refused only with
`InvalidSlug`; the names derived from distinct slugs are distinct, fit PostgreSQL's 63 bytes
or are refused, never collide with the template or control names, and fall under the
deployment's own LIKE pattern (what the harness and the deletion sweep match on).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.core.tenancy import InvalidSlug, Names, validate_slug
from tests.unit.core.strategies import PROPERTY, hostile_text

_FIRST = set(string.ascii_lowercase)
_BODY = set(string.ascii_lowercase + string.digits + "-")


def _is_slug(text: object) -> bool:
    return (
        isinstance(text, str)
        and 2 <= len(text) <= 31
        and text[0] in _FIRST
        and set(text) <= _BODY
        and text[-1] != "-"
    )


# Every length around the bounds, first and last characters drawn apart (they decide).
_EDGE = st.sampled_from("az0-")
slug_like = st.tuples(
    _EDGE, st.integers(0, 32).flatmap(lambda n: st.text(_EDGE, min_size=n, max_size=n)), _EDGE
).map("".join)
valid_slugs = st.from_regex(r"[a-z][a-z0-9-]{0,29}[a-z0-9]", fullmatch=True)


@PROPERTY
@given(
    st.one_of(
        slug_like,
        slug_like,
        valid_slugs,
        valid_slugs.map(str.upper),
        st.tuples(valid_slugs, hostile_text).map("".join),
        st.tuples(hostile_text, valid_slugs).map("".join),
        hostile_text,
        st.integers(),
        st.none(),
        st.binary(max_size=8),
    )
)
@example("a" * 31)
@example("a" * 32)
@example("acme\n")
@example("\u212acme")  # Kelvin sign: lower-cases to "k"
@example("\uff41cme")  # full-width a
@example("acme\x00")
def test_accepted_exactly_as_the_rule_reads(value):
    if _is_slug(value):
        assert validate_slug(value) == value
    else:
        with pytest.raises(InvalidSlug):
            validate_slug(value)


deployments = st.from_regex(r"t[0-9a-f]{1,20}", fullmatch=True)
services = st.sampled_from(["identity", "inventory", "privacy", "evidence"])


def _like(pattern: str, text: str) -> bool:
    """PostgreSQL LIKE with backslash escapes, as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append({"%": ".*", "_": "."}.get(ch) or re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), text, re.S) is not None


@PROPERTY
@given(deployments, services, valid_slugs, valid_slugs)
def test_derived_names_are_distinct_bounded_and_owned(deployment, service, one, other):
    names = Names(deployment, service)
    try:
        first = names.tenant_database(one)
    except InvalidSlug:
        assert len(f"{deployment}_{service}_{one}".encode()) > 63
        return
    assert len(first.encode()) <= 63 and names.tenant_role(one) == first
    assert _like(names.owned_prefix(), first)
    assert first not in (names.template_database, names.control_database)
    try:
        second = names.tenant_database(other)
    except InvalidSlug:
        return
    assert (first == second) == (one == other)
    # Another deployment's pattern never claims it (the harness drops what it matches).
    stranger = Names(deployment + "0", service)
    assert not _like(stranger.owned_prefix(), first)
