"""Properties of the AWS key provider's key references (core/keys/aws.py), which come from
tenants (BYO-KMS) and operators: a text is accepted exactly when an independent reading of
the rule accepts it (``arn:aws:kms:<region>:<12 digits>:key/<lower-case UUID or mrk- and 32
hex digits>``, nothing around it), and then parses into its parts and back into the same
text; anything else, odd Unicode, NULs, huge or not text at all, is refused only with
`InvalidKey`, with one of two fixed messages (an alias is told apart), never repeating the
input. A key outside the allowed regions is refused naming its region.
"""

from __future__ import annotations

import string
import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.core.keys.aws import ARN_FORM, AwsKms, parse_key_arn
from ontrackio.core.keys.kms import InvalidKey
from tests.unit.core.strategies import PROPERTY, hostile_text

MALFORMED = f"not a KMS key ARN ({ARN_FORM})"
ALIAS = "a KMS alias is not accepted: name the key itself by its key ARN"
_LOWER, _DIGITS, _HEX = set(string.ascii_lowercase), set(string.digits), set("0123456789abcdef")


def _reading(text: object) -> tuple[str, str, str] | None:
    """(region, account, key id) if `text` is a key ARN, read without a regular expression."""
    if not isinstance(text, str):
        return None
    parts = text.split(":")
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "kms"]:
        return None
    region, account, resource = parts[3:]
    words = region.split("-")
    if len(words) < 3 or len(words[0]) != 2:
        return None
    if not all(w and set(w) <= _LOWER for w in words[:-1]):
        return None
    if not (1 <= len(words[-1]) <= 2 and set(words[-1]) <= _DIGITS):
        return None
    if len(account) != 12 or not set(account) <= _DIGITS:
        return None
    kind, slash, key = resource.partition("/")
    if kind != "key" or not slash:
        return None
    if key.startswith("mrk-"):
        ok = len(key) == 36 and set(key[4:]) <= _HEX
    else:
        try:
            ok = str(uuid.UUID(key)) == key  # the canonical spelling only
        except ValueError:
            ok = False
    return (region, account, key) if ok else None


def _alias(text: object) -> bool:
    return isinstance(text, str) and (
        text.startswith("alias/") or (text.startswith("arn:") and ":alias/" in text)
    )


regions = st.sampled_from(["eu-central-1", "eu-west-1", "eu-central-2", "us-gov-west-1"])
accounts = st.text(st.sampled_from(string.digits), min_size=12, max_size=12)
_hex = st.sampled_from("0123456789abcdef")


def _hex_text(n: int):
    return st.text(_hex, min_size=n, max_size=n)


key_ids = st.one_of(
    st.uuids().map(str),
    st.tuples(*map(_hex_text, (8, 4, 4, 4, 12))).map("-".join),
    _hex_text(32).map("mrk-".__add__),
)
arns = st.builds(lambda r, a, k: f"arn:aws:kms:{r}:{a}:key/{k}", regions, accounts, key_ids)
# Near misses, one part at a time: regions of other shapes, accounts of other lengths, key
# ids with one character replaced (a capital, a non-hex letter, a separator).
odd_regions = st.from_regex(r"[a-zA-Z]{1,3}(-[a-z]{0,8}){0,3}-[0-9]{0,3}", fullmatch=True)
odd_accounts = st.text(st.sampled_from(string.digits), min_size=10, max_size=14)
odd_key_ids = st.tuples(key_ids, st.integers(0, 35), st.sampled_from("ABCDEFgz_-0")).map(
    lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
)
near_arns = st.one_of(
    st.builds("arn:aws:kms:{}:{}:key/{}".format, odd_regions, accounts, key_ids),
    st.builds("arn:aws:kms:{}:{}:key/{}".format, regions, odd_accounts, key_ids),
    st.builds("arn:aws:kms:{}:{}:key/{}".format, regions, accounts, odd_key_ids),
)


def _spliced(draw_from):
    """`text` with hostile text put in at one place."""
    return st.tuples(draw_from, st.integers(0, 120), hostile_text).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )


references = st.one_of(
    arns,
    near_arns,
    arns.map(str.upper),
    arns.map(lambda a: a.replace("arn:aws:", "arn:aws-cn:")),
    arns.map(lambda a: a.replace(":key/", ":alias/")),
    arns.map(lambda a: a + "\n"),
    arns.map(lambda a: a.replace("-", "\u2010")),
    _spliced(arns),
    _spliced(arns),
    st.text(st.sampled_from("arnwskmyeu-cetl0123456789abcdf:/"), max_size=90),
    hostile_text.map("alias/".__add__),
    hostile_text,
    st.text(max_size=60),
    st.integers(),
    st.none(),
    st.binary(max_size=8),
)


@PROPERTY
@given(references)
@example("arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eu-central-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab")
@example("arn:aws:kms:eu-central-1:111122223333:key/1234ABCD-12AB-34CD-56EF-1234567890AB")
@example("arn:aws:kms:eu-central-1:111122223333:key/{1234abcd-12ab-34cd-56ef-1234567890ab}")
@example("arn:aws:kms:eu-central-1:111122223333:key/1234abcd12ab34cd56ef1234567890ab")
@example("arn:aws:kms:eu-central-1:11112222333\uff13:key/1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\x00")
@example("arn:aws:kms:eu-central-1:111122223333:alias/tenant")
@example("alias/aws/kms")
@example("1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eu-central-1:" + "1" * 100_000)
@example("\ud800")
def test_a_key_reference_parses_exactly_when_it_is_a_key_arn(text):
    _parses_as_read(text)


@PROPERTY
@given(near_arns)
@example("arn:aws:kms:eu-central-123:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eur-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eu-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
@example("arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890a_")
@example("arn:aws:kms:eu-central-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ag")
def test_a_near_miss_parses_exactly_when_it_is_a_key_arn(text):
    _parses_as_read(text)


def _parses_as_read(text: object) -> None:
    expected = _reading(text)
    if expected is None:
        with pytest.raises(InvalidKey) as refused:
            parse_key_arn(text)
        assert str(refused.value) == (ALIAS if _alias(text) else MALFORMED)
        return
    arn = parse_key_arn(text)
    assert (arn.region, arn.account, arn.key_id) == expected
    assert str(arn) == text


class _NoKms:
    """A client factory for providers whose tests must not reach any KMS."""

    def __call__(self, region: str):
        raise AssertionError(f"a KMS client of {region} was asked for")


@PROPERTY
@given(arns, st.sets(st.sampled_from(["eu-central-1", "eu-west-1", "eu-north-1"]), min_size=1))
def test_a_key_outside_the_allowed_regions_is_refused_naming_its_region(arn, allowed):
    platform = f"arn:aws:kms:{sorted(allowed)[0]}:111122223333:key/{uuid.uuid4()}"
    kms = AwsKms(platform_key=platform, allowed_regions=tuple(allowed), client_factory=_NoKms())
    region = parse_key_arn(arn).region
    if region in allowed:
        assert kms.region_of(arn) == region
    else:
        with pytest.raises(InvalidKey, match=f"key region '{region}' is not an allowed region"):
            kms.region_of(arn)
        with pytest.raises(InvalidKey):
            kms.unwrap(arn, b"x", {})  # refused before any client is made
