"""TOTP rules (identity/mfa/totp.py): RFC 6238's test vectors, the window of one step either
side, no code accepted twice, what a typed code may look like, the enrolment URI and its QR
code."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import pyotp
import pytest
import segno

from ontrackio.identity.errors import InvalidTotpCode
from ontrackio.identity.mfa import totp
from ontrackio.identity.mfa.totp import matching_step, parse_code, provisioning_uri, qr_svg

# RFC 6238 Appendix B: the seeds are ASCII "1234567890" repeated to the digest's size.
SEEDS = {
    "sha1": (hashlib.sha1, b"12345678901234567890"),
    "sha256": (hashlib.sha256, b"12345678901234567890123456789012"),
    "sha512": (
        hashlib.sha512,
        b"1234567890123456789012345678901234567890123456789012345678901234",
    ),
}
# (time, SHA-1, SHA-256, SHA-512): the table of Appendix B, 8 digits, 30-second steps.
RFC6238_VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
CASES = [
    pytest.param(name, t, codes[i], id=f"{name}-{t}")
    for t, *codes in RFC6238_VECTORS
    for i, name in enumerate(SEEDS)
]

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # fixed, so the tests are deterministic
STEP = 58_000_000  # a step in 2025
SVG_NS = "{http://www.w3.org/2000/svg}"


def b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode().rstrip("=")


def code_at(step: int, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def at_step(step: int, into: float = 0.0) -> float:
    return step * totp.PERIOD + into


# -- RFC 6238 Appendix B ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "t", "code"), CASES)
def test_rfc6238_vectors_match_their_time_step(name, t, code):
    digest, seed = SEEDS[name]
    step = t // 30
    args = dict(digits=8, digest=digest)
    assert matching_step(b32(seed), code, t, last_step=None, **args) == step
    assert matching_step(b32(seed), code, t, last_step=None, window=0, **args) == step
    assert matching_step(b32(seed), code, t, last_step=step - 1, **args) == step
    assert matching_step(b32(seed), code, t, last_step=step, **args) is None
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert matching_step(b32(seed), wrong, t, last_step=None, **args) is None


@pytest.mark.parametrize("name", list(SEEDS))
def test_another_digest_does_not_accept_the_vectors(name):
    digest, seed = SEEDS[name]
    other = hashlib.sha256 if digest is hashlib.sha1 else hashlib.sha1
    for t, *codes in RFC6238_VECTORS:
        code = codes[list(SEEDS).index(name)]
        assert matching_step(b32(seed), code, t, last_step=None, digits=8, digest=other) is None


# -- the window ---------------------------------------------------------------------------


def test_the_window_is_the_previous_current_and_next_step():
    assert (totp.PERIOD, totp.DIGITS, totp.WINDOW) == (30, 6, 1)
    code = code_at(STEP)
    for offset in (-1, 0, 1):
        for into in (0.0, 14.5, 29.999):
            now = at_step(STEP + offset, into)
            assert matching_step(SECRET, code, now, last_step=None) == STEP, (offset, into)
    for offset in (-3, -2, 2, 3):
        assert matching_step(SECRET, code, at_step(STEP + offset), last_step=None) is None


def test_window_zero_accepts_only_the_current_step_and_a_wider_one_more():
    code = code_at(STEP)
    assert matching_step(SECRET, code, at_step(STEP), last_step=None, window=0) == STEP
    assert matching_step(SECRET, code, at_step(STEP + 1), last_step=None, window=0) is None
    assert matching_step(SECRET, code, at_step(STEP + 2), last_step=None, window=2) == STEP


def test_steps_before_the_epoch_are_left_out():
    assert matching_step(SECRET, code_at(0), 0.0, last_step=None) == 0
    assert matching_step(SECRET, code_at(1), 0.0, last_step=None) == 1
    assert matching_step(SECRET, code_at(2), 0.0, last_step=None) is None


# -- no code twice ------------------------------------------------------------------------


def test_a_replayed_code_is_refused():
    code = code_at(STEP)
    now = at_step(STEP, 3)
    accepted = matching_step(SECRET, code, now, last_step=None)
    assert accepted == STEP
    assert matching_step(SECRET, code, now, last_step=accepted) is None
    assert matching_step(SECRET, code, now + 20, last_step=accepted) is None


def test_an_older_code_after_a_newer_one_is_refused():
    now = at_step(STEP, 10)
    newer = matching_step(SECRET, code_at(STEP + 1), now, last_step=None)
    assert newer == STEP + 1
    for older in (STEP - 1, STEP, STEP + 1):
        assert matching_step(SECRET, code_at(older), now, last_step=newer) is None
    # Only steps up to last_step are refused: a later one still counts.
    assert matching_step(SECRET, code_at(STEP), now, last_step=STEP - 1) == STEP
    assert matching_step(SECRET, code_at(STEP - 1), now, last_step=STEP - 2) == STEP - 1


# The RFC's SHA-1 seed gives steps COLLIDING and COLLIDING + 2 one code (found by search).
COLLIDING = 58_261_606


def test_when_two_steps_in_the_window_share_the_code_the_later_is_returned():
    secret = b32(SEEDS["sha1"][1])
    code = code_at(COLLIDING, secret)
    assert code == code_at(COLLIDING + 2, secret) == "905913"
    now = at_step(COLLIDING + 1)
    assert matching_step(secret, code, now, last_step=None) == COLLIDING + 2
    assert matching_step(secret, code, now, last_step=COLLIDING) == COLLIDING + 2
    assert matching_step(secret, code, now, last_step=COLLIDING + 2) is None
    assert matching_step(secret, code, at_step(COLLIDING), last_step=None) == COLLIDING


def test_a_code_that_is_not_digits_matches_nothing():
    code = code_at(STEP)
    now = at_step(STEP)
    for bad in ("", code[:-1], code + "0", "\uff10" * 6, code[:3] + " " + code[3:], "abcdef"):
        assert matching_step(SECRET, bad, now, last_step=None) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(now=-1.0),
        dict(now=float("nan")),
        dict(now=float("inf")),
        dict(now=253402300800),
        dict(window=-1),
        dict(secret="JBSWY3DP"),  # 40 bits
        dict(secret="not base32!"),
        dict(digits=5),
        dict(period=0),
    ],
)
def test_impossible_arguments_raise_value_error(kwargs):
    args = dict(secret=SECRET, code="123456", now=at_step(STEP), last_step=None) | kwargs
    with pytest.raises(ValueError):
        matching_step(**args)


# -- secrets ------------------------------------------------------------------------------


def test_new_secrets_are_160_random_bits_in_unpadded_base32():
    a, b = totp.new_secret(), totp.new_secret()
    assert a != b
    for s in (a, b):
        assert re.fullmatch(r"[A-Z2-7]{32}", s)
        assert len(base64.b32decode(s)) == totp.SECRET_BYTES == 20


# -- parse_code ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["123456", "123 456", "123-456", " 123456 ", "  123 456", "123 - 456", "123  456", "1-23456"],
)
def test_typed_codes_with_spacing_or_one_hyphen_are_read(typed):
    assert parse_code(typed) == "123456"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        " ",
        "12345",
        "1234567",
        "123 4567",
        "12-34-56",
        "12 34 56",
        "123--456",
        "-123456",
        "123456-",
        "123_456",
        "+123456",
        "123.456",
        "123456\n",
        "\t123456",
        "123\u00a0456",  # no-break space
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
        "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits
        "\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6",  # extended Arabic-Indic digits
        "12345\uff16",
        "\u00b223456",  # superscript two
        "12345\u0666",
        "123\u2212456",  # minus sign
        "１２３-４５６",
        "123456\x00",
        "\ud800123456",
    ],
)
def test_anything_else_is_refused(typed):
    with pytest.raises(InvalidTotpCode):
        parse_code(typed)


def test_other_lengths_are_read_when_asked_for():
    assert parse_code("1234 5678", digits=8) == "12345678"
    with pytest.raises(InvalidTotpCode):
        parse_code("123456", digits=8)


@pytest.mark.parametrize("huge", ["1" * 10**7, " " * 10**7 + "123456", "123 456" + "-" * 10**7])
def test_huge_input_is_refused_before_it_is_read(huge):
    started = time.perf_counter()
    with pytest.raises(InvalidTotpCode):
        parse_code(huge)
    assert time.perf_counter() - started < 0.1


def test_the_length_is_bounded_before_the_spacing_is_read():
    padded = "123 456".center(totp.MAX_CODE_INPUT)
    assert parse_code(padded) == "123456"
    with pytest.raises(InvalidTotpCode):
        parse_code(padded + " ")


def test_the_refusal_does_not_echo_the_input():
    with pytest.raises(InvalidTotpCode) as caught:
        parse_code("98765x")
    assert "98765" not in str(caught.value)


# -- the enrolment URI --------------------------------------------------------------------


@pytest.mark.parametrize(
    "account",
    [
        "ada@example.com",
        "ada:lovelace@example.com",
        "OnTrackio:ada@example.com",
        "a/b@example.com",
        "ada+mfa@example.com",
        "x?y#z&issuer=Evil&secret=AAAA%20%3A",
        "Zoë Ødegård 名前",
        "a" * totp.MAX_ACCOUNT_LABEL,
    ],
)
def test_the_uri_round_trips_through_pyotp(account):
    secret = totp.new_secret()
    uri = provisioning_uri(secret, account)
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.issuer, parsed.name) == (secret, totp.ISSUER, account)
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (6, 30, "sha1")
    assert parsed.at(at_step(STEP)) == pyotp.TOTP(secret).at(at_step(STEP))
    # One path segment "<issuer>:<account>" with one literal colon, in printable ASCII.
    parts = urlparse(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parts.path.count("/") == 1 and parts.path.count(":") == 1
    assert parts.path.startswith(f"/{totp.ISSUER}:")
    assert uri.isascii() and uri.isprintable() and " " not in uri


def test_another_issuer_is_kept():
    uri = provisioning_uri(SECRET, "ada@example.com", issuer="OnTrackio Staging")
    assert uri.startswith("otpauth://totp/OnTrackio%20Staging:ada%40example.com?")
    assert pyotp.parse_uri(uri).issuer == "OnTrackio Staging"


@pytest.mark.parametrize(
    "account",
    [
        "",
        "a" * (totp.MAX_ACCOUNT_LABEL + 1),
        "ada@example.com\n",
        "ada\r\nissuer=Evil",
        "ada\x00",
        "ada\x7f",
        "ada\x85",  # C1 next line
        "ada\u2028",  # line separator
        "\u202eada",  # right-to-left override
        "ad\u200ba",  # zero width space
        "ada\ud800",  # lone surrogate
    ],
)
def test_control_characters_and_overlong_labels_are_refused(account):
    with pytest.raises(ValueError):
        provisioning_uri(SECRET, account)


@pytest.mark.parametrize(
    ("secret", "issuer"),
    [
        (SECRET.lower(), totp.ISSUER),
        ("JBSWY3DPEHPK3PXPJBSWY3DPEH======", totp.ISSUER),
        ("JBSWY3DPEHPK3PXP", totp.ISSUER),  # 80 bits
        (SECRET, "On:Trackio"),
        (SECRET, ""),
        (SECRET, "On\nTrackio"),
    ],
)
def test_bad_secrets_and_issuers_are_refused(secret, issuer):
    with pytest.raises(ValueError):
        provisioning_uri(secret, "ada@example.com", issuer=issuer)


# -- the QR code --------------------------------------------------------------------------

_SEGMENT = re.compile(r"([Mm])(-?\d+(?:\.\d+)?) (-?\d+(?:\.\d+)?)h(\d+)")


def drawn_modules(svg: str) -> tuple[int, set[tuple[int, int]]]:
    """The SVG's scale and its dark modules (row, column), read back from segno's path."""
    root = ET.fromstring(svg)
    group = root.find(f"{SVG_NS}g")
    scale = int(re.fullmatch(r"scale\((\d+)\)", group.get("transform")).group(1))
    (line,) = [p for p in group.iter(f"{SVG_NS}path") if p.get("class") == "qrline"]
    assert line.get("stroke") == "#000"
    d = line.get("d")
    assert "".join(m.group(0) for m in _SEGMENT.finditer(d)) == d
    dark, x, y = set(), 0.0, 0.0
    for move, dx, dy, length in _SEGMENT.findall(d):
        x, y = (float(dx), float(dy)) if move == "M" else (x + float(dx), y + float(dy))
        row = int(y - 0.5) - 4  # the quiet zone is 4 modules; a line runs mid-module
        dark.update((row, int(x) - 4 + i) for i in range(int(length)))
        x += int(length)
    return scale, dark


def test_the_svg_draws_the_qr_code_of_the_uri():
    uri = provisioning_uri(SECRET, "ada@example.com")
    svg = qr_svg(uri)
    assert svg.startswith("<svg") and "<?xml" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert root.findtext(f"{SVG_NS}title") == totp.QR_TITLE
    (background,) = [p for p in root.iter(f"{SVG_NS}path") if p.get("fill")]
    assert background.get("fill") == "#fff"
    expected = segno.make(uri, error="m", micro=False)
    assert expected.error in ("M", "Q", "H") and not expected.is_micro
    size = len(expected.matrix)
    scale, dark = drawn_modules(svg)
    assert scale == totp.QR_SCALE
    assert int(root.get("width")) == int(root.get("height")) == (size + 8) * scale
    want = {(r, c) for r, row in enumerate(expected.matrix) for c, v in enumerate(row) if v}
    assert dark == want


def test_the_same_uri_gives_the_same_svg_and_another_another():
    uri = provisioning_uri(SECRET, "ada@example.com")
    assert qr_svg(uri) == qr_svg(uri)
    other = provisioning_uri(SECRET, "bob@example.com")
    assert drawn_modules(qr_svg(uri))[1] != drawn_modules(qr_svg(other))[1]


def test_the_longest_label_still_fits_and_too_much_data_raises_value_error():
    ET.fromstring(qr_svg(provisioning_uri(SECRET, "\u540d" * totp.MAX_ACCOUNT_LABEL)))
    with pytest.raises(ValueError):
        qr_svg("otpauth://totp/x?secret=" + "A" * 8000)
