"""Properties of the CLI's durations (``ontrack token create --expires-in 30d``,
cli/access.py): every ``<n><unit>`` with 1 <= n < 10^9 is n times the unit in seconds, with
surrounding blanks ignored; anything else — zero, signs, look-alike digits (full-width,
Arabic-Indic, superscripts), other units, case, NUL, bidi controls, inner spaces — is a
`click.BadParameter`, never another error and never a silently different lifetime.
"""

from __future__ import annotations

import click
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.cli.access import UNITS, parse_duration
from tests.unit.core.strategies import PROPERTY, hostile_text

units = st.sampled_from(sorted(UNITS))
blanks = st.sampled_from(["", " ", "\t", "\n", "  "])


@PROPERTY
@given(st.integers(1, 10**9 - 1), units, blanks, blanks, st.integers(0, 3))
def test_every_duration_is_its_count_of_units(count, unit, before, after, zeros):
    text = before + "0" * zeros + str(count) + unit + after
    if len(str(count)) + zeros > 9:  # at most nine digits
        with pytest.raises(click.BadParameter):
            parse_duration(text)
        return
    assert parse_duration(text) == count * UNITS[unit]


def _reference(text: str) -> int | None:
    core = text.strip()
    digits, unit = core[:-1], core[-1:]
    if unit not in UNITS or not 1 <= len(digits) <= 9:
        return None
    if not all(c in "0123456789" for c in digits) or int(digits) == 0:
        return None
    return int(digits) * UNITS[unit]


@PROPERTY
@given(
    st.one_of(
        hostile_text,
        st.tuples(hostile_text, st.integers(0, 10**10).map(str), units, hostile_text).map("".join),
        st.tuples(st.sampled_from(["-", "+", "\uff11", "\u0661", "\u00b9", "0x"]), units).map(
            "".join
        ),
    )
)
@example("30D")
@example("1 d")
@example("\uff13\uff10d")
@example("0d")
@example("30d\x00")
@example("\u202e30d")
def test_anything_else_is_bad_parameter(text):
    expected = _reference(text)
    if expected is None:
        with pytest.raises(click.BadParameter):
            parse_duration(text)
    else:
        assert parse_duration(text) == expected
