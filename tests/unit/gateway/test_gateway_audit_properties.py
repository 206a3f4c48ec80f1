"""Properties of the audit API's parameters and its CSV (gateway/api/audit.py): every
RFC 3339 time the schema admits is the instant an independent reading of its fields names,
or `BadTime` (no real instant, or outside the years a Timestamp holds) — never another
error; the CSV of any entries reads back, with Python's csv reader, as exactly one row per
entry and the values given, and no cell starts a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.api import audit
from ontrackio.gateway.openapi import Invalid, validate
from tests.unit.gateway.strategies import PROPERTY

SINCE = next(p.schema for p in audit.PARAMS if p.name == "since")
_FIELDS = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"(?:Z|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def _instant(text: str) -> datetime | None:
    """The UTC instant `text` names, read field by field; None if it names none."""
    m = _FIELDS.match(text)
    assert m, text
    y, mo, d, h, mi, s, frac, sign, oh, om = m.groups()
    try:
        offset = timedelta(hours=int(oh or 0), minutes=int(om or 0)) * (-1 if sign == "-" else 1)
        local = datetime(
            int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0").ljust(6, "0"))
        )
        utc = local - offset  # may leave the representable years
        timezone(offset)  # offsets of 24 h or more do not exist
    except (ValueError, OverflowError):
        return None
    return utc.replace(tzinfo=UTC)


def _parsed(text: str) -> datetime | None:
    try:
        ts = audit.parse_time(text)
    except audit.BadTime:
        return None
    return ts.ToDatetime(tzinfo=UTC)


@PROPERTY
@given(st.from_regex(audit.TIME_PATTERN.rstrip("$") + r"\Z"))
@example("2026-01-01T00:00:00+00:60")
@example("0001-01-01T00:00:00+01:00")
@example("9999-12-31T23:59:59-01:00")
@example("2026-02-29T00:00:00Z")
def test_a_time_the_schema_admits_is_its_instant_or_bad_time(text):
    validate(text, SINCE, "since")  # the generated text is what the schema admits
    assert _parsed(text) == _instant(text), text


zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@PROPERTY
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones),
    st.integers(0, 6),
    st.booleans(),
)
def test_any_instant_written_in_rfc3339_round_trips(moment, digits, zulu):
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")  # %Y: no zero padding
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    offset = moment.utcoffset()
    if zulu and not offset:
        text += "Z"
    else:
        minutes = int(offset.total_seconds() // 60)
        text += f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    validate(text, SINCE, "since")
    expected = moment.replace(microsecond=int(f"{moment.microsecond:06d}"[:digits].ljust(6, "0")))
    assert _parsed(text) == expected.astimezone(UTC), text


@PROPERTY
@given(
    st.text(max_size=40) | st.sampled_from(["2026-01-01T00:00:00Z\n", "２０２６-01-01T00:00:00Z"])
)
def test_other_text_is_refused_by_the_schema_or_is_bad_time(text):
    try:
        validate(text, SINCE, "since")
    except Invalid:
        return
    if not _FIELDS.match(text):  # "$" admits a trailing newline: parse_time must refuse it
        assert _parsed(text) is None, text


# -- CSV ------------------------------------------------------------------------------------

DANGER = ("=", "+", "-", "@", "\t", "\r")
cell_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(["=1+1", "+1", "-1", "@SUM(A1)", "\t=x", "\r=x", '"', '","', "\r\n", "'=x"]),
    st.tuples(st.sampled_from(DANGER), st.text(max_size=4)).map("".join),
)
json_cell = st.recursive(
    st.none() | st.booleans() | st.integers() | cell_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(cell_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def entries(draw) -> dict:
    item = {c: draw(cell_text) for c in audit.CSV_COLUMNS}
    item.update(
        id=draw(st.integers(-(1 << 63), 1 << 63)),
        seq=draw(st.none() | st.integers()),
        actor_display=draw(st.none() | cell_text),
        old=draw(json_cell),
        new=draw(json_cell),
    )
    return item


@PROPERTY
@given(st.lists(entries(), max_size=5))
def test_csv_reads_back_row_for_row_without_formulas(items):
    text = audit.to_csv(items)
    text.encode("utf-8")  # what the response sends
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(audit.CSV_COLUMNS)
    assert len(rows) == len(items) + 1
    for item, row in zip(items, rows[1:], strict=True):
        assert len(row) == len(audit.CSV_COLUMNS)
        for column, cell in zip(audit.CSV_COLUMNS, row, strict=True):
            assert not cell.startswith(DANGER), (column, cell)
            value = item[column]
            if value is None:
                assert cell == ""
                continue
            original = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            assert cell in (original, "'" + original), (column, cell, original)
            assert (cell != original) == original.startswith(DANGER)
