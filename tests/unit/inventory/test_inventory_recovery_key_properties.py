"""An asset's recovery key as inventory accepts it (inventory/assets.py,
validate_recovery_key): any text is either refused with InvalidAsset (a 400 at the
gateway) or accepted as printable text of at most 256 characters, never another error; NUL,
control characters, lone surrogates and oversized values are refused."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.inventory.assets import MAX_RECOVERY_KEY_CHARS, validate_recovery_key
from ontrackio.inventory.errors import InvalidAsset
from tests.unit.gateway.strategies import PROPERTY

HOSTILE = st.text(st.characters(codec=None), max_size=600) | st.text(
    st.characters(blacklist_categories=()), max_size=600
)


@PROPERTY
@given(HOSTILE)
@example("\x00")
@example("\ud800")
@example("123456-\u202e654321")
@example("x" * (MAX_RECOVERY_KEY_CHARS + 1))
@example("  111111-222222  ")
def test_any_text_is_refused_or_accepted_printable_and_bounded(text):
    try:
        kept = validate_recovery_key(text)
    except InvalidAsset as exc:
        assert "recovery_key" in str(exc)
        return
    assert kept == text.strip()
    assert len(kept) <= MAX_RECOVERY_KEY_CHARS and kept.isprintable()
    kept.encode("utf-8")  # no lone surrogate reaches PostgreSQL or the cipher


@pytest.mark.parametrize("bad", ["\x00", "a\nb", "\ud800", "x" * 257])
def test_hostile_values_are_refused(bad):
    with pytest.raises(InvalidAsset):
        validate_recovery_key(bad)
