"""The gateway's audit operation module: time parsing, format choice, CSV, the document."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.gateway import refusals
from ontrackio.gateway.api import audit
from ontrackio.gateway.openapi import Invalid, document, validate


def test_times_parse_to_utc_timestamps():
    t = audit.parse_time("2026-12-01T18:00:00.5+02:00")
    assert t.ToJsonString() == "2026-12-01T16:00:00.500Z"
    assert audit.parse_time("") is None


@pytest.mark.parametrize(
    "text", ["2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "0000-01-01T00:00:00Z"]
)
def test_impossible_times_are_bad_times(text):
    assert re.match(audit.TIME_PATTERN, text)
    with pytest.raises(audit.BadTime):
        audit.parse_time(text)


@given(
    st.text(max_size=40) | st.sampled_from(["２０２６-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n"])
)
def test_hostile_times_are_refused_by_the_schema_or_parsed(text):
    schema = next(p.schema for p in audit.PARAMS if p.name == "since")
    try:
        validate(text, schema, "since")
    except Invalid:
        return
    try:
        audit.parse_time(text)
    except audit.BadTime:
        pass


@pytest.mark.parametrize(
    "params,accept,expected",
    [
        ({}, "", False),
        ({}, "text/csv", True),
        ({}, "application/json, text/csv", False),
        ({}, "text/csv;q=0.9, */*", False),  # */* (so JSON) has q=1: JSON preferred
        ({}, "text/csv;q=0", False),  # q=0: not acceptable
        ({"format": "json"}, "text/csv", False),
        ({"format": "csv"}, "application/json", True),
    ],
)
def test_format_choice(params, accept, expected):
    assert audit.wants_csv(params, accept) is expected


def test_csv_has_every_column_and_no_formulas():
    item = {c: "" for c in audit.CSV_COLUMNS} | {
        "id": 3,
        "seq": None,
        "actor": "=cmd|' /C calc'!A0",
        "new": {"cidrs": ["10.0.0.0/8"]},
        "target": "line\nbreak, comma",
    }
    rows = list(csv.reader(io.StringIO(audit.to_csv([item]))))
    assert rows[0] == list(audit.CSV_COLUMNS)
    got = dict(zip(rows[0], rows[1], strict=True))
    assert got["actor"].startswith("'=") and got["seq"] == "" and got["id"] == "3"
    assert got["new"] == '{"cidrs": ["10.0.0.0/8"]}' and got["target"] == "line\nbreak, comma"


def test_the_operation_is_documented_as_an_admin_list():
    doc = document(audit.OPERATIONS, title="t", version="1")
    op = doc["paths"]["/admin/api/v1/audit"]["get"]
    assert op["operationId"] == "listAudit"
    assert op["security"] == [{"bearer": ["admin"]}, {"session": ["admin"]}]
    reader = doc["paths"]["/api/v1/audit"]["get"]
    assert reader["security"] == [{"bearer": ["audit:read"]}, {"session": ["audit:read"]}]
    assert {p["name"] for p in op["parameters"]} == {
        "actor",
        "action",
        "since",
        "until",
        "format",
        "page_size",
        "page_token",
    }


def test_refusal_reporter_refuses_unknown_actions():
    with pytest.raises(ValueError):
        refusals.RefusalReporter(upstream=None).report("acme", "token.create")
