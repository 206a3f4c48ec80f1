"""Encrypted field values (core/keys/fields.py): a value opens only under its own key and
at its own place (tenant, table, column, row); a blob copied elsewhere, altered or cut
short is FieldUnreadable naming why; the stored layout is the documented one."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ontrackio.core import errors
from ontrackio.core.keys import fields
from ontrackio.core.keys.fields import FieldUnreadable, InvalidFieldValue

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PLACE = ("7f0c3f4e-0000-4000-8000-000000000001", "assets", "serial_number", "42")


def sealed(value: bytes = b"SN-1234", version: int = 3, place=PLACE) -> bytes:
    return fields.seal(KEY, version, fields.aad(*place), value)


def unreadable_cause(key: bytes, place, blob: bytes) -> str:
    with pytest.raises(FieldUnreadable) as info:
        fields.unseal(key, fields.aad(*place), blob)
    return info.value.cause


# -- round trip and layout -------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", b"x", b"\x00\xff" * 100, bytes(fields.MAX_PLAINTEXT_BYTES)])
def test_a_sealed_value_opens_at_its_place_under_its_key(value):
    assert fields.unseal(KEY, fields.aad(*PLACE), sealed(value)) == value


def test_the_blob_is_format_version_nonce_then_gcm_over_prefix_and_aad():
    blob = sealed(b"SN-1234", version=0x01020304)
    assert blob[:5] == b"\x01\x01\x02\x03\x04"
    assert len(blob) == 1 + 4 + 12 + len(b"SN-1234") + 16
    nonce, body = blob[5:17], blob[17:]
    # An independent decryption of the documented layout: stored values outlive a release.
    assert AESGCM(KEY).decrypt(nonce, body, blob[:5] + fields.aad(*PLACE)) == b"SN-1234"


def test_a_value_written_by_the_documented_layout_opens():
    nonce = b"\x09" * 12
    prefix = b"\x01\x00\x00\x00\x07"
    blob = prefix + nonce + AESGCM(KEY).encrypt(nonce, b"v", prefix + fields.aad(*PLACE))
    assert fields.unseal(KEY, fields.aad(*PLACE), blob) == b"v"
    assert fields.version_of(blob) == 7


def test_aad_is_the_label_and_each_part_length_prefixed():
    assert fields.aad("t", "tb", "cé", "1") == (
        b"ontrack:field:v1"
        + b"\x00\x00\x00\x01t"
        + b"\x00\x00\x00\x02tb"
        + b"\x00\x00\x00\x03c\xc3\xa9"
        + b"\x00\x00\x00\x011"
    )


def test_each_seal_uses_a_fresh_nonce():
    assert sealed()[5:17] != sealed()[5:17]


# -- moved, altered, cut short -----------------------------------------------------------------


@pytest.mark.parametrize(
    "place",
    [
        ("7f0c3f4e-0000-4000-8000-000000000002", *PLACE[1:]),  # another tenant
        (PLACE[0], "locations", *PLACE[2:]),  # another table
        (*PLACE[:2], "owner_email", PLACE[3]),  # another column
        (*PLACE[:3], "43"),  # another row
    ],
    ids=["tenant", "table", "column", "row"],
)
def test_a_ciphertext_moved_elsewhere_fails_to_decrypt(place):
    assert unreadable_cause(KEY, place, sealed()) == "not_authentic"


def test_parts_that_concatenate_alike_bind_different_places():
    blob = fields.seal(KEY, 1, fields.aad("a", "bc", "d", "e"), b"v")
    assert unreadable_cause(KEY, ("ab", "c", "d", "e"), blob) == "not_authentic"


def test_another_key_fails_to_decrypt():
    assert unreadable_cause(OTHER_KEY, PLACE, sealed()) == "not_authentic"


@pytest.mark.parametrize("index", [0, 1, 4, 5, 16, 17, -17, -1])
def test_any_altered_byte_fails(index):
    blob = bytearray(sealed())
    blob[index] ^= 0x01
    cause = "unknown_format" if index == 0 else "not_authentic"
    assert unreadable_cause(KEY, PLACE, bytes(blob)) == cause


def test_a_version_changed_under_the_same_key_fails():
    """The version is authenticated: a caller that opens with whatever key it holds still
    notices a blob relabelled to another version."""
    blob = sealed(version=3)
    relabelled = blob[:4] + b"\x04" + blob[5:]
    assert fields.version_of(relabelled) == 4
    assert unreadable_cause(KEY, PLACE, relabelled) == "not_authentic"


@pytest.mark.parametrize("length", [0, 1, 5, 17, fields.MIN_BLOB_BYTES - 1])
def test_a_blob_shorter_than_header_and_tag_is_too_short(length):
    assert unreadable_cause(KEY, PLACE, sealed(b"")[:length]) == "too_short"


def test_a_value_cut_by_a_byte_fails():
    assert unreadable_cause(KEY, PLACE, sealed(b"abc")[:-1]) == "not_authentic"


@pytest.mark.parametrize("first", [0x00, 0x02, 0xFF])
def test_an_unknown_format_byte_is_refused(first):
    blob = bytes([first]) + sealed()[1:]
    assert unreadable_cause(KEY, PLACE, blob) == "unknown_format"
    with pytest.raises(
        FieldUnreadable, match=r"^encrypted field cannot be read \(unknown format\)$"
    ):
        fields.version_of(blob)


# -- version_of ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 255, 256, 2**31 - 1])
def test_version_of_reads_the_version_sealed(version):
    assert fields.version_of(sealed(version=version)) == version


@pytest.mark.parametrize("raw", [b"\x00\x00\x00\x00", b"\x80\x00\x00\x00", b"\xff\xff\xff\xff"])
def test_version_of_refuses_a_version_no_key_can_have(raw):
    blob = b"\x01" + raw + sealed()[5:]
    with pytest.raises(FieldUnreadable) as info:
        fields.version_of(blob)
    assert info.value.cause == "bad_version"


@pytest.mark.parametrize("version", [0, -1, 2**31])
def test_seal_refuses_a_version_outside_the_range(version):
    with pytest.raises(ValueError):
        fields.seal(KEY, version, fields.aad(*PLACE), b"v")


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)])
def test_a_key_of_another_length_is_a_callers_bug(key):
    with pytest.raises(ValueError):
        fields.seal(key, 1, b"", b"v")
    with pytest.raises(ValueError):
        fields.unseal(key, b"", sealed())


# -- limits and text ------------------------------------------------------------------------------


def test_a_value_over_the_limit_is_an_invalid_argument():
    with pytest.raises(InvalidFieldValue, match="at most 65536 bytes"):
        sealed(bytes(fields.MAX_PLAINTEXT_BYTES + 1))
    assert issubclass(InvalidFieldValue, errors.InvalidArgument)


@pytest.mark.parametrize("text", ["", "Zoë", "東京", "😀" * 10, "a\u202eb", "\ufeff"])
def test_text_round_trips(text):
    blob = fields.seal_text(KEY, 2, fields.aad(*PLACE), text)
    assert fields.unseal_text(KEY, fields.aad(*PLACE), blob) == text


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x\udfffy"])
def test_text_postgres_cannot_hold_is_refused(text):
    with pytest.raises(InvalidFieldValue):
        fields.seal_text(KEY, 1, fields.aad(*PLACE), text)


def test_text_over_the_limit_in_utf8_is_refused():
    text = "é" * (fields.MAX_PLAINTEXT_BYTES // 2 + 1)  # under the limit in characters
    with pytest.raises(InvalidFieldValue):
        fields.seal_text(KEY, 1, fields.aad(*PLACE), text)


@pytest.mark.parametrize("raw", [b"\xff", b"\xed\xa0\x80", b"a\x00"])
def test_authentic_bytes_that_are_not_text_are_not_text(raw):
    blob = sealed(raw)
    with pytest.raises(FieldUnreadable) as info:
        fields.unseal_text(KEY, fields.aad(*PLACE), blob)
    assert info.value.cause == "not_text"


@pytest.mark.parametrize(
    "place", [("", "t", "c", "1"), ("t", "", "c", "1"), ("t", "t", "", "1"), ("t", "t", "c", "")]
)
def test_an_empty_part_binds_nothing_and_is_refused(place):
    with pytest.raises(InvalidFieldValue):
        fields.aad(*place)


def test_a_lone_surrogate_in_a_part_is_an_invalid_argument():
    with pytest.raises(errors.InvalidArgument):
        fields.aad("t", "t", "c", "\ud800")


def test_unreadable_is_a_failed_precondition_whose_message_shows_no_value():
    exc = errors.FieldUnreadable("not_authentic")
    assert exc.kind is errors.Kind.FAILED_PRECONDITION
    assert str(exc) == "encrypted field cannot be read (not authentic)"
    assert errors.FieldUnreadable("anything else").cause == "not_authentic"


# -- FieldKey: a data key made ready once ---------------------------------------------------------


def test_a_field_key_seals_and_opens_as_the_functions_do():
    key, aad = fields.FieldKey(KEY, 3), fields.aad(*PLACE)
    assert key.version == 3 and key.key == KEY and key.prefix == sealed(version=3)[:5]
    assert fields.unseal(KEY, aad, key.seal(aad, b"SN-1234")) == b"SN-1234"
    assert key.unseal(aad, sealed(b"SN-1234", version=3)) == b"SN-1234"
    assert fields.unseal_text(KEY, aad, key.seal_text(aad, "Zoë")) == "Zoë"
    assert key.unseal_text(aad, fields.seal_text(KEY, 3, aad, "Zoë")) == "Zoë"
    assert key.unseal(aad, memoryview(sealed(b"v", version=3))) == b"v"
    assert key.unseal(aad, bytearray(sealed(b"v", version=3))) == b"v"


@pytest.mark.parametrize(
    "blob, cause",
    [
        (sealed(version=4), "not_authentic"),  # another version's: not this key's to open
        (sealed(version=3)[:20], "too_short"),
        (b"\x02" + sealed(version=3)[1:], "unknown_format"),
        (b"\x01\x00\x00\x00\x00" + sealed(version=3)[5:], "bad_version"),
        (sealed(b"v", version=3, place=(*PLACE[:3], "43")), "not_authentic"),
    ],
    ids=["other-version", "short", "format", "version-0", "other-row"],
)
def test_a_field_key_names_why_a_blob_does_not_open(blob, cause):
    with pytest.raises(FieldUnreadable) as info:
        fields.FieldKey(KEY, 3).unseal(fields.aad(*PLACE), blob)
    assert info.value.cause == cause


def test_a_field_key_checks_its_text_and_size_as_seal_text_does():
    key, aad = fields.FieldKey(KEY, 1), fields.aad(*PLACE)
    for text in ("a\x00b", "\ud800", "é" * (fields.MAX_PLAINTEXT_BYTES // 2 + 1)):
        with pytest.raises(InvalidFieldValue):
            key.seal_text(aad, text)
    with pytest.raises(InvalidFieldValue, match=r"at most 65536 bytes \(65537 given\)"):
        key.seal(aad, bytes(fields.MAX_PLAINTEXT_BYTES + 1))
    with pytest.raises(FieldUnreadable) as info:
        key.unseal_text(aad, key.seal(aad, b"\xff"))
    assert info.value.cause == "not_text"


@pytest.mark.parametrize("key, version", [(bytes(31), 1), (KEY, 0), (KEY, 2**31)])
def test_a_field_key_is_checked_when_made(key, version):
    with pytest.raises(ValueError):
        fields.FieldKey(key, version)


def test_a_field_key_never_shows_its_key():
    shown = repr(fields.FieldKey(KEY, 2))
    assert shown == "FieldKey(version=2)" and KEY.hex() not in shown


def test_a_tenant_id_that_cannot_be_encoded_is_refused_every_time():
    """The AAD up to the row id is kept per (tenant, table, column); a refusal is not."""
    for _ in range(2):
        with pytest.raises(errors.InvalidArgument):
            fields.aad("t\ud800", "assets", "serial_number", "1")
    assert fields.aad("t", "assets", "serial_number", "1") == fields.encode_parts(
        fields.AAD_LABEL, ("t", "assets", "serial_number", "1")
    )
