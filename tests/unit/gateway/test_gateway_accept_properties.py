"""Properties of the audit trail's format choice (``wants_csv``): ``?format=`` decides alone;
otherwise CSV exactly when the ``Accept`` header gives ``text/csv`` a higher quality than
``application/json`` under RFC 9110 12.5.1, and any text at all is answered with a bool.

The reference reading below never parses a header: headers are rendered from generated
media ranges (case, blanks, parameters, quoted strings with commas, empty list elements,
every spelling of a qvalue), and the expected choice is computed from the ranges themselves.
Malformed elements (bad qvalues, non-ASCII digits, ``*/csv``, controls, surrogates) are mixed
in; the reading ignores them, so they must not change the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.api.audit import wants_csv
from tests.unit.gateway.strategies import PROPERTY, any_text, latin1_text

CSV, JSON = ("text", "csv"), ("application", "json")
RANGES = [
    ("*", "*"), ("text", "*"), ("application", "*"), CSV, JSON, ("text", "plain"),
    ("application", "xml"), ("image", "*"), ("application", "problem+json"), ("text", "csv-x"),
]  # fmt: skip


@dataclass(frozen=True)
class Range:
    media: tuple[str, str]
    thousandths: int  # the weight, 0..1000; 1000 when q is not written
    text: str  # how it is written in the header


def quality(ranges: list[Range], offer: tuple[str, str]) -> int:
    """RFC 9110 12.5.1: the weight of the most specific range matching ``offer`` (the highest
    among equally specific ones), 0 when none matches; no range at all: any type, 1."""
    if not ranges:
        return 1000
    by_specificity: dict[int, list[int]] = {}
    for r in ranges:
        kind, sub = r.media
        if (kind, sub) == offer:
            by_specificity.setdefault(2, []).append(r.thousandths)
        elif kind == offer[0] and sub == "*":
            by_specificity.setdefault(1, []).append(r.thousandths)
        elif (kind, sub) == ("*", "*"):
            by_specificity.setdefault(0, []).append(r.thousandths)
    return max(by_specificity[max(by_specificity)]) if by_specificity else 0


def _case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))


ows = st.sampled_from(["", " ", "\t", "  ", " \t"])
param_values = st.sampled_from(
    ["utf-8", "present", '"a,b"', '"x;q=0"', '"\\"quoted\\", text/csv"', '""', "1"]
)


@st.composite
def qvalues(draw) -> tuple[int, str]:
    """A weight and one of its RFC 9110 spellings (1, 1., 1.0, 1.000, 0.5, 0.50, 0.125...)."""
    if draw(st.booleans()):
        return 1000, draw(st.sampled_from(["1", "1.", "1.0", "1.00", "1.000"]))
    digits = draw(st.integers(0, 3))
    frac = draw(st.integers(0, 10**digits - 1)) if digits else 0
    written = f"0.{frac:0{digits}d}" if digits else draw(st.sampled_from(["0", "0."]))
    return frac * 10 ** (3 - digits), written


@st.composite
def ranges(draw) -> Range:
    kind, sub = draw(st.sampled_from(RANGES))
    text = _case(draw, f"{kind}/{sub}")
    for _ in range(draw(st.integers(0, 2))):
        name = _case(draw, draw(st.sampled_from(["charset", "header", "level"])))
        text += f"{draw(ows)};{draw(ows)}{name}={draw(param_values)}"
    weight = 1000
    if draw(st.booleans()):
        weight, written = draw(qvalues())
        text += f"{draw(ows)};{draw(ows)}{draw(st.sampled_from(['q', 'Q']))}={written}"
    return Range((kind, sub), weight, text)


# Not media ranges with a valid weight: the reading ignores each of these.
MALFORMED = [
    "text/csv;q=2", "text/csv;q=1.5", "text/csv;q=1.001", "text/csv;q=0.1234", "text/csv;q=-1",
    "text/csv;q=", "text/csv;q=abc", "text/csv;q=1e0", "text/csv;q=.5", "text/csv;q= 0.5",
    "text/csv;q=\u0661", "text/csv;q=\uff10.\uff15", "text/csv;q=nan", "text/csv;q=0.5x",
    'text/csv;q="0.5"', "*/csv", "*/json", "text/c\x00sv", "te xt/csv", "tëxt/csv", "text",
    "/csv", "text/", "text/csv;=1", "text/csv;charset", "\ud800/csv", "text/csv\x7f",
    "application/json;q=2", "application/\u0135son", "*/*;q=1.5", "text/*;q=0.5;", "\x00",
]  # fmt: skip


@st.composite
def accept_headers(draw) -> tuple[str, list[Range]]:
    """An Accept header and the valid ranges it holds, in order."""
    valid = draw(st.lists(ranges(), max_size=6))
    noise = draw(st.lists(st.sampled_from(MALFORMED + [""]), max_size=3))
    elements = [r.text for r in valid]
    for n in noise:
        elements.insert(draw(st.integers(0, len(elements))), n)
    header = ",".join(f"{draw(ows)}{e}{draw(ows)}" for e in elements)
    return header, valid


@PROPERTY
@given(accept_headers())
@example(("text/csv", [Range(CSV, 1000, "")]))
@example(("text/csv;q=0", [Range(CSV, 0, "")]))
@example(("application/json;q=0.5, text/csv", [Range(JSON, 500, ""), Range(CSV, 1000, "")]))
@example(("text/csv;q=0.1, application/json", [Range(CSV, 100, ""), Range(JSON, 1000, "")]))
@example(("text/*", [Range(("text", "*"), 1000, "")]))
@example(("text/csv;q=0.9, */*", [Range(CSV, 900, ""), Range(("*", "*"), 1000, "")]))
@example(("text/csv;q=2, application/json;q=0.5", [Range(JSON, 500, "")]))
@example(('text/csv;x="a,b", application/json;q=0.5', [Range(CSV, 1000, ""), Range(JSON, 500, "")]))
def test_accept_prefers_csv_exactly_when_rfc9110_qualities_do(case):
    header, valid = case
    expected = quality(valid, CSV) > quality(valid, JSON)
    assert wants_csv({}, header) is expected, (header, valid)


@PROPERTY
@given(st.sampled_from(["json", "csv"]), st.one_of(any_text, latin1_text, accept_headers()))
def test_format_parameter_decides_alone(fmt, accept):
    header = accept[0] if isinstance(accept, tuple) else accept
    assert wants_csv({"format": fmt}, header) is (fmt == "csv")


@PROPERTY
@given(st.one_of(any_text, latin1_text, st.text(st.sampled_from(' \t,;="\\/*qQ=.0159'))))
def test_any_header_text_gets_a_bool(text):
    assert wants_csv({}, text) in (True, False)


def test_huge_headers_are_answered():
    """Many elements, one long quoted string, an unterminated quote: answered (a scan that is
    quadratic in the header would not finish within the suite's timeout)."""
    many = ", ".join(["application/json;q=0.5"] * 50_000 + ["text/csv"])
    assert wants_csv({}, many) is True
    assert wants_csv({}, 'text/csv;x="' + "a," * 200_000 + '"') is True
    assert wants_csv({}, 'text/csv;x="' + "\\" * 200_001) is False
