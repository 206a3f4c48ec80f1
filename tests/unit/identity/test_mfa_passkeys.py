"""Passkey rules (identity/mfa/passkeys.py) against a software authenticator
(tests/soft_webauthn.py): registration and sign-in, several credentials, the checks of
origin, RP id, challenge, user verification and signature, the counter rule (a copied
authenticator is PasskeyCloned, one that does not count is accepted), and whatever arrives
instead of a browser's JSON being InvalidPasskey or PasskeyRefused, never another exception.
"""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.identity.errors import InvalidPasskey, PasskeyCloned, PasskeyRefused
from ontrackio.identity.mfa import passkeys
from ontrackio.identity.mfa.passkeys import (
    authentication_options,
    credential_id_of,
    origin_for,
    registration_options,
    user_handle_of,
    validate_name,
    verify_authentication,
    verify_registration,
)
from tests.soft_webauthn import NotAllowed, SoftAuthenticator, b64url, unb64url
from tests.unit.core.strategies import PROPERTY, TEXT_ATOMS, hostile_text, json_values, nested

HOST = "acme.ontrack.test"
ORIGIN = origin_for(HOST)
OTHER_HOST = "globex.ontrack.test"
USER = b"\x01" * 16
EXPECTED = (InvalidPasskey, PasskeyRefused)


def options_for_user(*, exclude: tuple[bytes, ...] = (), policy: str = "required"):
    """Registration options (and their challenge) for USER at HOST."""
    return registration_options(
        rp_id=HOST,
        user_handle=USER,
        user_name="ada@acme.test",
        display_name="Ada",
        exclude=list(exclude),
        user_verification=policy,
    )


def register(
    auth: SoftAuthenticator,
    *,
    exclude: tuple[bytes, ...] = (),
    policy: str = "required",
    **answer,
) -> passkeys.Registered:
    """Register ``auth`` for USER at HOST under the user verification ``policy``;
    ``answer`` goes to the authenticator."""
    options, challenge = options_for_user(exclude=exclude, policy=policy)
    response = auth.register(options, origin=answer.pop("origin", ORIGIN), **answer)
    kw = {"challenge": challenge, "rp_id": HOST, "origin": ORIGIN}
    kw["require_user_verification"] = policy == "required"
    return verify_registration(response, **kw)


def sign_in(
    auth: SoftAuthenticator,
    registered: passkeys.Registered,
    *,
    stored: int,
    policy: str = "required",
    allow: tuple[bytes, ...] = (),
    **answer,
) -> passkeys.Asserted:
    """Sign in with ``auth``, whose credential was ``registered`` and has ``stored`` as its
    count."""
    response, kw = assertion(auth, policy=policy, allow=allow, **answer)
    kw.update(public_key=registered.public_key, stored_sign_count=stored)
    return verify_authentication(response, **kw)


def assertion(auth, *, policy="required", allow=(), **answer) -> tuple[str, dict]:
    """``auth``'s answer to new authentication options, and verify_authentication's
    arguments but the stored key and count."""
    options, challenge = authentication_options(
        rp_id=HOST, allow=list(allow), user_verification=policy
    )
    response = auth.authenticate(options, origin=answer.pop("origin", ORIGIN), **answer)
    kw = {"challenge": challenge, "rp_id": HOST, "origin": ORIGIN}
    kw["require_user_verification"] = policy == "required"
    return response, kw


def reason_of(excinfo) -> str:
    return excinfo.value.reason


def edited(response_json: str, edit) -> str:
    value = json.loads(response_json)
    edit(value)
    return json.dumps(value)


# -- options -------------------------------------------------------------------------------


def test_registration_options_ask_for_a_discoverable_credential_without_attestation():
    excluded = [b"\x02" * 32, b"\x03" * 40]
    text, challenge = registration_options(
        rp_id=HOST,
        user_handle=USER,
        user_name="ada@acme.test",
        display_name="",
        exclude=excluded,
        user_verification="preferred",
    )
    options = json.loads(text)
    assert len(challenge) == passkeys.CHALLENGE_BYTES
    assert unb64url(options["challenge"]) == challenge
    assert options["rp"] == {"name": "OnTrackio", "id": HOST}
    assert options["user"] == {
        "id": b64url(USER),
        "name": "ada@acme.test",
        "displayName": "ada@acme.test",  # an empty display name is the user name
    }
    assert options["attestation"] == "none"
    assert options["timeout"] == passkeys.TIMEOUT_MS == 300_000
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "preferred",
    }
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-8, -7, -257]
    assert [unb64url(d["id"]) for d in options["excludeCredentials"]] == excluded


def test_authentication_options_with_and_without_an_allow_list():
    text, challenge = authentication_options(rp_id=HOST, allow=[], user_verification="required")
    options = json.loads(text)
    assert unb64url(options["challenge"]) == challenge and len(challenge) == 32
    assert options["rpId"] == HOST and options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    text, _ = authentication_options(
        rp_id=HOST, allow=[b"\x05" * 16], user_verification="preferred"
    )
    assert json.loads(text)["allowCredentials"] == [
        {"id": b64url(b"\x05" * 16), "type": "public-key"}
    ]


def test_every_challenge_is_new():
    challenges = {
        authentication_options(rp_id=HOST, allow=[], user_verification="required")[1]
        for _ in range(50)
    }
    assert len(challenges) == 50


@pytest.mark.parametrize("uv", ["discouraged", "REQUIRED", "", None, "required "])
def test_user_verification_is_required_or_preferred(uv):
    with pytest.raises(ValueError):
        authentication_options(rp_id=HOST, allow=[], user_verification=uv)
    with pytest.raises(ValueError):
        registration_options(
            rp_id=HOST,
            user_handle=USER,
            user_name="a",
            display_name="a",
            exclude=[],
            user_verification=uv,
        )


@pytest.mark.parametrize(
    "change",
    [
        {"user_handle": b""},
        {"user_handle": b"x" * 65},
        {"user_handle": "not bytes"},
        {"user_name": ""},
        {"rp_id": ""},
        {"rp_id": "https://acme.ontrack.test"},
        {"rp_id": "Acme.ontrack.test"},
        {"exclude": [b""]},
        {"exclude": [b"x" * 1024]},
    ],
)
def test_registration_options_refuse_bad_arguments(change):
    kw = {
        "rp_id": HOST,
        "user_handle": USER,
        "user_name": "a",
        "display_name": "a",
        "exclude": [],
        "user_verification": "required",
    }
    kw.update(change)
    with pytest.raises(ValueError):
        registration_options(**kw)


def test_origin_is_https_and_the_exact_host():
    assert origin_for("acme.ontrack.test") == "https://acme.ontrack.test"
    for bad in ["", "acme.ontrack.test:8443", "acme.ontrack.test/", "ACME.test", "a..b", "-a.b"]:
        with pytest.raises(ValueError):
            origin_for(bad)


# -- registration and sign-in --------------------------------------------------------------


def test_register_then_sign_in():
    auth = SoftAuthenticator()
    registered = register(auth)
    assert registered.credential_id == auth.credential_id
    assert registered.public_key == auth.cose_public_key()
    assert registered.sign_count == 0
    assert registered.aaguid == "00000000-0000-0000-0000-000000000000"
    assert registered.backed_up is False and registered.device_type == "single_device"
    assert registered.transports == ("internal", "hybrid")

    response, kw = assertion(auth)
    assert credential_id_of(response) == auth.credential_id
    assert user_handle_of(response) == USER
    asserted = verify_authentication(
        response, public_key=registered.public_key, stored_sign_count=0, **kw
    )
    assert asserted == passkeys.Asserted(auth.credential_id, 1, True, False)
    assert sign_in(auth, registered, stored=1).new_sign_count == 2


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
def test_each_offered_algorithm_registers_and_signs_in(algorithm):
    auth = SoftAuthenticator(algorithm=algorithm)
    registered = register(auth)
    assert registered.public_key == auth.cose_public_key()
    assert sign_in(auth, registered, stored=0).new_sign_count == 1
    impostor = SoftAuthenticator(algorithm=algorithm)  # the same credential, another key
    impostor.credential_id, impostor.rp_id = auth.credential_id, auth.rp_id
    impostor.sign_count = 5
    with pytest.raises(PasskeyRefused) as excinfo:
        sign_in(impostor, registered, stored=1)
    assert reason_of(excinfo) == "signature"


def test_a_packed_self_attestation_is_accepted():
    auth = SoftAuthenticator()
    registered = register(auth, attestation="packed")
    assert sign_in(auth, registered, stored=0).new_sign_count == 1


@pytest.mark.parametrize(
    "statement",
    [
        {"alg": -7, "sig": b"0" * 70},  # not the credential's signature
        {"alg": -8, "sig": b"0" * 64},  # not the credential's algorithm
        {"sig": b"0" * 70},
        {"none": True, "sig": b"0"},  # "none" must have an empty statement
    ],
    ids=["signature", "alg", "no-alg", "none-with-statement"],
)
def test_an_attestation_that_does_not_verify_is_refused(statement):
    fmt = "none" if statement.pop("none", False) else "packed"
    response, kw = created_response(SoftAuthenticator())
    changed = edited(response, with_attestation(lambda a: a.update(fmt=fmt, attStmt=statement)))
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_registration(changed, **kw)
    assert reason_of(excinfo) == "attestation"


def test_an_unknown_attestation_format_is_refused():
    response, kw = created_response(SoftAuthenticator())
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_registration(edited(response, with_attestation(lambda a: a.update(fmt="x"))), **kw)
    assert reason_of(excinfo) == "attestation"


def created_response(auth: SoftAuthenticator) -> tuple[str, dict]:
    options, challenge = options_for_user()
    kw = {"challenge": challenge, "rp_id": HOST, "origin": ORIGIN}
    return auth.register(options, origin=ORIGIN), {**kw, "require_user_verification": True}


def test_a_synced_passkey_reports_its_backup_state():
    auth = SoftAuthenticator(backup_eligible=True, backed_up=True)
    registered = register(auth)
    assert registered.device_type == "multi_device" and registered.backed_up is True
    assert sign_in(auth, registered, stored=0).backed_up is True


def test_backed_up_without_being_eligible_is_refused():
    with pytest.raises(PasskeyRefused) as excinfo:
        register(SoftAuthenticator(backed_up=True))
    assert reason_of(excinfo) == "backup-flags"


def test_several_credentials_each_with_its_own_key():
    laptop, phone = SoftAuthenticator(), SoftAuthenticator(attachment="cross-platform")
    first = register(laptop)
    second = register(phone, exclude=(first.credential_id,))
    assert first.credential_id != second.credential_id
    with pytest.raises(NotAllowed):  # the browser will not register the laptop twice
        register(laptop, exclude=(first.credential_id, second.credential_id))
    ids = (first.credential_id, second.credential_id)
    assert sign_in(laptop, first, stored=0, allow=ids).credential_id == first.credential_id
    assert sign_in(phone, second, stored=0, allow=ids).credential_id == second.credential_id
    with pytest.raises(PasskeyRefused) as excinfo:  # the laptop's answer, the phone's key
        sign_in(laptop, second, stored=0)
    assert reason_of(excinfo) == "signature"


def test_user_handle_may_be_null():
    auth = SoftAuthenticator()
    registered = register(auth)
    response, kw = assertion(auth, user_handle=False)
    assert user_handle_of(response) is None
    empty = edited(response, lambda v: v["response"].update(userHandle=""))
    assert user_handle_of(empty) is None
    verify_authentication(response, public_key=registered.public_key, stored_sign_count=0, **kw)


# -- what is refused -----------------------------------------------------------------------


def test_wrong_origin_is_refused():
    with pytest.raises(PasskeyRefused) as excinfo:
        register(SoftAuthenticator(), origin="https://evil.test")
    assert reason_of(excinfo) == "origin"
    auth = SoftAuthenticator()
    registered = register(auth)
    with pytest.raises(PasskeyRefused) as excinfo:
        sign_in(auth, registered, stored=0, origin="http://acme.ontrack.test")
    assert reason_of(excinfo) == "origin"


def test_wrong_rp_id_is_refused():
    with pytest.raises(PasskeyRefused) as excinfo:
        register(SoftAuthenticator(), rp_id="ontrack.test")
    assert reason_of(excinfo) == "rp-id"
    auth = SoftAuthenticator()
    registered = register(auth)
    with pytest.raises(PasskeyRefused) as excinfo:
        sign_in(auth, registered, stored=0, rp_id=OTHER_HOST)
    assert reason_of(excinfo) == "rp-id"


def test_a_passkey_of_one_tenant_is_refused_at_another_tenants_host():
    auth = SoftAuthenticator()
    registered = register(auth)
    response, kw = assertion(auth)
    kw.update(rp_id=OTHER_HOST, origin=origin_for(OTHER_HOST))
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_authentication(response, public_key=registered.public_key, stored_sign_count=0, **kw)
    assert reason_of(excinfo) == "origin"


def test_a_response_to_another_challenge_is_refused():
    auth = SoftAuthenticator()
    response, kw = created_response(auth)
    _, kw["challenge"] = options_for_user()
    with pytest.raises(PasskeyRefused) as excinfo:  # answering an earlier ceremony
        verify_registration(response, **kw)
    assert reason_of(excinfo) == "challenge"

    registered = register(auth)
    response, kw = assertion(auth)
    verify_authentication(response, public_key=registered.public_key, stored_sign_count=0, **kw)
    _, kw["challenge"] = authentication_options(rp_id=HOST, allow=[], user_verification="required")
    with pytest.raises(PasskeyRefused) as excinfo:  # replayed for the next sign-in
        verify_authentication(response, public_key=registered.public_key, stored_sign_count=0, **kw)
    assert reason_of(excinfo) == "challenge"


def test_user_verification_missing_is_refused_when_required_and_accepted_when_preferred():
    auth = SoftAuthenticator()
    with pytest.raises(PasskeyRefused) as excinfo:
        register(auth, policy="required", uv=False)
    assert reason_of(excinfo) == "user-verification"
    registered = register(auth, policy="preferred", uv=False)
    with pytest.raises(PasskeyRefused) as excinfo:
        sign_in(auth, registered, stored=0, policy="required", uv=False)
    assert reason_of(excinfo) == "user-verification"
    asserted = sign_in(auth, registered, stored=auth.sign_count, policy="preferred", uv=False)
    assert asserted.user_verified is False


def test_a_copy_with_a_lower_or_equal_count_is_cloned():
    auth = SoftAuthenticator()
    registered = register(auth)
    copy = auth.clone()
    stored = 0
    for _ in range(3):
        stored = sign_in(auth, registered, stored=stored).new_sign_count
    assert stored == 3
    copy.sign_count = 1  # the copy answers 2: behind the original's 3
    with pytest.raises(PasskeyCloned) as excinfo:
        sign_in(copy, registered, stored=stored)
    assert reason_of(excinfo) == "sign-count-regression"
    assert isinstance(excinfo.value, PasskeyRefused)
    copy.sign_count = stored - 1  # the copy answers 3: the same count is a regression too
    with pytest.raises(PasskeyCloned):
        sign_in(copy, registered, stored=stored)
    zero = auth.clone()
    zero.counts, zero.sign_count = False, 0
    with pytest.raises(PasskeyCloned):  # a counting credential that now says 0
        sign_in(zero, registered, stored=stored)


def test_an_authenticator_that_does_not_count_is_accepted():
    auth = SoftAuthenticator(counts=False)
    registered = register(auth)
    assert registered.sign_count == 0
    for _ in range(3):
        assert sign_in(auth, registered, stored=0).new_sign_count == 0


def test_a_count_that_starts_later_is_accepted():
    auth = SoftAuthenticator()
    registered = register(auth)
    auth.sign_count = 41
    assert sign_in(auth, registered, stored=0).new_sign_count == 42


def test_the_counter_is_only_judged_on_a_signed_response():
    """A low count with a bad signature is a bad signature, not a clone: nobody can get a
    credential flagged as copied without its key."""
    auth = SoftAuthenticator()
    registered = register(auth)
    response, kw = assertion(auth)  # count 1
    forged = edited(response, lambda v: v["response"].update(signature=b64url(b"0" * 70)))
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_authentication(forged, public_key=registered.public_key, stored_sign_count=9, **kw)
    assert type(excinfo.value) is PasskeyRefused and reason_of(excinfo) == "signature"


def flip(text: str, index: int) -> str:
    raw = bytearray(unb64url(text))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.update(signature=flip(r["signature"], -1)),
        lambda r: r.update(signature=flip(r["signature"], 8)),
        lambda r: r.update(authenticatorData=flip(r["authenticatorData"], 36)),  # the count
        lambda r: r.update(authenticatorData=flip(r["authenticatorData"], 32)),  # the flags, UP
        lambda r: r.update(
            clientDataJSON=b64url(unb64url(r["clientDataJSON"]).replace(b",", b", ", 1))
        ),
    ],
    ids=["signature-end", "signature-middle", "count", "flags", "client-data"],
)
def test_a_tampered_assertion_is_refused(tamper):
    auth = SoftAuthenticator()
    registered = register(auth)
    response, kw = assertion(auth)
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_authentication(
            edited(response, lambda v: tamper(v["response"])),
            public_key=registered.public_key,
            stored_sign_count=0,
            **kw,
        )
    assert type(excinfo.value) is PasskeyRefused
    assert reason_of(excinfo) in ("signature", "user-presence")


def test_a_cross_origin_answer_is_refused():
    with pytest.raises(PasskeyRefused) as excinfo:
        register(SoftAuthenticator(), cross_origin=True)
    assert reason_of(excinfo) == "cross-origin"
    auth = SoftAuthenticator()
    registered = register(auth)
    with pytest.raises(PasskeyRefused) as excinfo:
        sign_in(auth, registered, stored=0, cross_origin=True)
    assert reason_of(excinfo) == "cross-origin"


def test_a_credential_id_unlike_the_authenticator_datas_is_refused():
    other = b64url(b"\x09" * 32)
    options, challenge = options_for_user()
    response = edited(
        SoftAuthenticator().register(options, origin=ORIGIN),
        lambda v: v.update(id=other, rawId=other),
    )
    with pytest.raises(PasskeyRefused) as excinfo:
        verify_registration(
            response, challenge=challenge, rp_id=HOST, origin=ORIGIN, require_user_verification=True
        )
    assert reason_of(excinfo) == "credential-id"


def cose_ec2(x: bytes, y: bytes, *, alg: int = -7, crv: int = 1) -> bytes:
    return cbor2.dumps({1: 2, 3: alg, -1: crv, -2: x, -3: y})


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (cose_ec2(b"\x01" * 32, b"\x02" * 32), "public-key"),  # not on the curve
        (cose_ec2(b"\x01" * 32, b"\x02" * 32, alg=-8), "public-key"),
        (cose_ec2(b"\x01" * 32, b"\x02" * 32, alg=-36), "algorithm"),  # ES512: not offered
        (cbor2.dumps({1: 9, 3: -7}), "public-key"),  # no such key type
        (cbor2.dumps({1: 3, 3: -257, -1: b"\x01" * 64, -2: b"\x01\x00\x01"}), "public-key"),
        (cbor2.dumps({1: 1, 3: -8, -1: 6, -2: b"\x01" * 31}), "public-key"),
    ],
    ids=["off-curve", "ec2-eddsa", "es512", "kty-9", "rsa-512", "ed25519-short"],
)
def test_a_public_key_that_cannot_verify_is_refused_at_registration(key, reason):
    with pytest.raises(PasskeyRefused) as excinfo:
        register(SoftAuthenticator(), cose_key=key)
    assert reason_of(excinfo) == reason


def test_a_cose_key_missing_its_fields_is_unreadable_or_refused():
    with pytest.raises(EXPECTED):
        register(SoftAuthenticator(), cose_key=cbor2.dumps({1: 2}))
    with pytest.raises(EXPECTED):
        register(SoftAuthenticator(), cose_key=cbor2.dumps({"kty": "EC2"}))


def test_verify_authentication_refuses_a_stored_key_or_count_that_is_wrong():
    auth = SoftAuthenticator()
    register(auth)
    response, kw = assertion(auth)
    for key in [
        b"",
        b"\x04" + b"\x01" * 64,
        cbor2.dumps({1: 2}),
        cose_ec2(b"\x01" * 32, b"\x02" * 32),
    ]:
        with pytest.raises(ValueError):
            verify_authentication(response, public_key=key, stored_sign_count=0, **kw)
    for count in [-1, 2**32, 1.0, True]:
        with pytest.raises(ValueError):
            verify_authentication(
                response, public_key=auth.cose_public_key(), stored_sign_count=count, **kw
            )


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "kept"),
    [
        ("Work laptop", "Work laptop"),
        ("  YubiKey 5C  ", "YubiKey 5C"),
        ("Téléphone d’Ada 📱", "Téléphone d’Ada 📱"),
        ("x" * 64, "x" * 64),
        (" " + "x" * 64 + "\u3000", "x" * 64),
    ],
)
def test_a_name_is_kept_stripped(given_name, kept):
    assert validate_name(given_name) == kept


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "\u3000", "x" * 65, "a\x00b", "a\tb", "a\nb", "evil\u202etxt", "a\u200bb",
     "a\u2028b", "a\u2029b", "a\ud800b", "\x85", None, b"laptop", 42],
)  # fmt: skip
def test_a_name_that_cannot_be_shown_is_refused(bad):
    with pytest.raises(InvalidPasskey):
        validate_name(bad)


# -- unreadable input ----------------------------------------------------------------------

READERS = {
    "verify_registration": lambda text: verify_registration(
        text, challenge=b"c" * 32, rp_id=HOST, origin=ORIGIN, require_user_verification=True
    ),
    "verify_authentication": lambda text: verify_authentication(
        text,
        challenge=b"c" * 32,
        rp_id=HOST,
        origin=ORIGIN,
        public_key=KEY.cose_public_key(),
        stored_sign_count=0,
        require_user_verification=True,
    ),
    "credential_id_of": credential_id_of,
    "user_handle_of": user_handle_of,
}
KEY = SoftAuthenticator()
JUNK = [
    None, b"{}", 123, {}, [], "", " ", "null", "[]", "{}", "\x00", "{\x00}", '{"id":"\x00"}',
    '"public-key"', "\ud800", "\ufeff{}", "NaN", '{"type": NaN}', "1" * 5000,
    '{"type": "public-key", "type": "public-key"}',
    nested(5000), nested(100_000), "{" * 40_000, "x" * (passkeys.MAX_RESPONSE_CHARS + 1),
    json.dumps({"type": "public-key", "id": "AA", "rawId": "AA", "response": "x" * 70_000}),
]  # fmt: skip


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("junk", JUNK, ids=range(len(JUNK)))
def test_junk_is_invalid_passkey(reader, junk):
    with pytest.raises(InvalidPasskey):
        READERS[reader](junk)


def answers() -> tuple[str, str, dict]:
    """A registration and an assertion of one authenticator, and the arguments verifying
    them takes."""
    auth = SoftAuthenticator()
    options, challenge = options_for_user()
    created = auth.register(options, origin=ORIGIN)
    options, got_challenge = authentication_options(
        rp_id=HOST, allow=[], user_verification="required"
    )
    got = auth.authenticate(options, origin=ORIGIN)
    return created, got, {"created": challenge, "got": got_challenge, "key": auth.cose_public_key()}


CREATED, GOT, ARGS = answers()


def verify_created(text: str):
    return verify_registration(
        text, challenge=ARGS["created"], rp_id=HOST, origin=ORIGIN, require_user_verification=True
    )


def verify_got(text: str):
    return verify_authentication(
        text,
        challenge=ARGS["got"],
        rp_id=HOST,
        origin=ORIGIN,
        public_key=ARGS["key"],
        stored_sign_count=0,
        require_user_verification=True,
    )


def attestation_of(response: dict) -> dict:
    return cbor2.loads(unb64url(response["response"]["attestationObject"]))


def with_attestation(change):
    def edit(value):
        attestation = attestation_of(value)
        change(attestation)
        value["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))

    return edit


def with_client_data(raw: bytes):
    return lambda v: v["response"].update(clientDataJSON=b64url(raw))


def set_auth_data(a: dict, data) -> None:
    a["authData"] = data


BAD_REGISTRATIONS = {
    "id-differs": lambda v: v.update(id=v["id"][:-1] + ("A" if v["id"][-1] != "A" else "B")),
    "padded": lambda v: v.update(id=v["id"] + "=", rawId=v["rawId"] + "="),
    "stray-bits": lambda v: v.update(id=v["id"][:-1] + "B", rawId=v["rawId"][:-1] + "B"),
    "plus-slash": lambda v: v.update(id="ab+/", rawId="ab+/"),
    "id-too-long": lambda v: v.update(id=b64url(b"i" * 1024), rawId=b64url(b"i" * 1024)),
    "id-empty": lambda v: v.update(id="", rawId=""),
    "type": lambda v: v.update(type="private-key"),
    "no-response": lambda v: v.pop("response"),
    "attachment": lambda v: v.update(authenticatorAttachment="bluetooth"),
    "extensions": lambda v: v.update(clientExtensionResults=[]),
    "client-data-not-utf8": with_client_data(b'{"type":"webauthn.create","x":"\xff"}'),
    "client-data-utf16": with_client_data('{"type":"webauthn.create"}'.encode("utf-16")),
    "client-data-list": with_client_data(b"[]"),
    "client-data-no-origin": with_client_data(b'{"type":"webauthn.create","challenge":"AA"}'),
    "client-data-challenge-not-b64": with_client_data(
        b'{"type":"webauthn.create","challenge":"*","origin":"https://acme.ontrack.test"}'
    ),
    "cross-origin-text": with_client_data(
        b'{"type":"webauthn.create","challenge":"AA","origin":"o","crossOrigin":"false"}'
    ),
    "attestation-trailing": lambda v: v["response"].update(
        attestationObject=b64url(unb64url(v["response"]["attestationObject"]) + b"\x00")
    ),
    "attestation-not-cbor": lambda v: v["response"].update(attestationObject=b64url(b"\xff")),
    "attestation-tag": with_attestation(lambda a: a["attStmt"].update(x=cbor2.CBORTag(35, "a+"))),
    "attestation-shared-loop": lambda v: v["response"].update(
        attestationObject=b64url(b"\xa3cfmtdnonegattStmt\xa1ax\xd8\x1c\x81\xd8\x1d\x00hauthData@")
    ),
    "auth-data-huge-int": with_attestation(lambda a: set_auth_data(a, 2**40)),
    "auth-data-short": with_attestation(lambda a: set_auth_data(a, b"\x00" * 36)),
    "auth-data-no-at": with_attestation(
        lambda a: set_auth_data(a, a["authData"][:32] + b"\x05" + a["authData"][33:])
    ),
    "auth-data-trailing": with_attestation(lambda a: set_auth_data(a, a["authData"] + b"\x00")),
    "auth-data-cut": with_attestation(lambda a: set_auth_data(a, a["authData"][:-5])),
    "auth-data-id-length": with_attestation(
        lambda a: set_auth_data(a, a["authData"][:53] + b"\xff\xff" + a["authData"][55:])
    ),
    "fmt-not-text": with_attestation(lambda a: a.update(fmt=1)),
    "att-stmt-list": with_attestation(lambda a: a.update(attStmt=[])),
    "transports-text": lambda v: v["response"].update(transports="usb"),
    "transports-numbers": lambda v: v["response"].update(transports=[1]),
}
BAD_ASSERTIONS = {
    "user-handle-number": lambda v: v["response"].update(userHandle=5),
    "user-handle-too-long": lambda v: v["response"].update(userHandle=b64url(b"u" * 65)),
    "user-handle-not-b64": lambda v: v["response"].update(userHandle="é"),
    "user-handle-one-char": lambda v: v["response"].update(userHandle="A"),
    "signature-empty": lambda v: v["response"].update(signature=""),
    "signature-missing": lambda v: v["response"].pop("signature"),
    "auth-data-short": lambda v: v["response"].update(authenticatorData=b64url(b"\x00" * 36)),
    "auth-data-at-junk": lambda v: v["response"].update(
        authenticatorData=b64url(
            unb64url(v["response"]["authenticatorData"])[:32] + b"\x45" + b"\x00" * 6
        )
    ),
    "client-data-nan": with_client_data(b'{"type":NaN,"challenge":"AA","origin":"o"}'),
    "client-data-duplicate": with_client_data(
        b'{"type":"webauthn.get","type":"webauthn.get","challenge":"AA","origin":"o"}'
    ),
}


@pytest.mark.parametrize("bad", BAD_REGISTRATIONS)
def test_an_unreadable_registration_is_invalid_passkey(bad):
    with pytest.raises(InvalidPasskey):
        verify_created(edited(CREATED, BAD_REGISTRATIONS[bad]))


@pytest.mark.parametrize("bad", BAD_ASSERTIONS)
def test_an_unreadable_assertion_is_invalid_passkey(bad):
    text = edited(GOT, BAD_ASSERTIONS[bad])
    for read in (verify_got, credential_id_of, user_handle_of):
        with pytest.raises(InvalidPasskey):
            read(text)


def test_the_unedited_answers_verify():
    assert verify_created(CREATED).credential_id == credential_id_of(GOT)
    assert verify_got(GOT).new_sign_count == 1


# -- properties ----------------------------------------------------------------------------


def outcome(call, *args) -> None:
    """``call`` returns or raises InvalidPasskey or PasskeyRefused, nothing else."""
    try:
        call(*args)
    except EXPECTED:
        pass


ALL_READERS = (verify_created, verify_got, credential_id_of, user_handle_of, *READERS.values())

b64_values = st.one_of(
    st.binary(max_size=80).map(b64url),
    st.binary(max_size=80).map(lambda b: b64url(b) + "="),
    st.text(alphabet="ABCabc019-_+/=", max_size=20),
)
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=40)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
auth_data_like = st.builds(
    lambda flags, count, id_length, tail: (
        b"\x00" * 32 + bytes([flags]) + count.to_bytes(4, "big") + bytes(16)
        + id_length.to_bytes(2, "big") + tail
    ),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**16 - 1),
    st.one_of(st.binary(max_size=120), cbor_values.map(cbor2.dumps)),
)  # fmt: skip
attestation_like = st.one_of(
    st.binary(max_size=200),
    cbor_values.map(cbor2.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "fmt": st.one_of(st.sampled_from(["none", "packed", "tpm", "fido-u2f"]), cbor_values),
            "attStmt": st.one_of(st.just({}), cbor_values),
            "authData": st.one_of(auth_data_like, st.binary(max_size=60), cbor_values),
        },
    ).map(cbor2.dumps),
).map(b64url)
client_data_like = st.one_of(
    st.binary(max_size=120),
    json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.sampled_from(["webauthn.create", "webauthn.get"]), json_values),
            "challenge": st.one_of(b64_values, json_values),
            "origin": st.one_of(st.just(ORIGIN), json_values),
            "crossOrigin": st.one_of(st.booleans(), json_values),
            "tokenBinding": json_values,
        },
    ).map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
).map(b64url)
field = st.one_of(json_values, b64_values)


@st.composite
def credential_like(draw) -> str:
    raw_id = draw(st.one_of(b64_values, json_values))
    response = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "clientDataJSON": st.one_of(client_data_like, field),
                "attestationObject": st.one_of(attestation_like, field),
                "authenticatorData": st.one_of(auth_data_like.map(b64url), field),
                "signature": st.one_of(b64_values, field),
                "userHandle": st.one_of(st.none(), b64_values, field),
                "transports": st.one_of(st.lists(st.sampled_from(["usb", "internal", "x"])), field),
            },
        )
    )
    top = {"id": raw_id if draw(st.booleans()) else draw(field), "rawId": raw_id}
    top["type"] = draw(st.one_of(st.just("public-key"), json_values))
    top["response"] = response if draw(st.integers(0, 9)) else draw(json_values)
    top.update(draw(st.dictionaries(hostile_text, json_values, max_size=3)))
    return json.dumps(top, ensure_ascii=draw(st.booleans()))


@PROPERTY
@given(
    st.one_of(
        hostile_text,
        st.text(),
        st.sampled_from(TEXT_ATOMS),
        json_values.map(json.dumps),
        st.integers(1, 6000).map(nested),
    )
)
def test_arbitrary_text_is_refused_or_unreadable(text):
    for read in ALL_READERS:
        outcome(read, text)
    outcome(validate_name, text)


@PROPERTY
@given(credential_like())
def test_arbitrary_credential_shaped_json_is_refused_or_unreadable(text):
    for read in ALL_READERS:
        outcome(read, text)


def paths(value, at=()):
    """Every place in a JSON value: (path, value)."""
    yield at, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*at, k))


def replaced(text: str, path: tuple, new) -> str:
    value = json.loads(text)
    if not path:
        return json.dumps(new)
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return json.dumps(value)


@PROPERTY
@given(st.data())
def test_a_valid_answer_with_one_field_changed_is_refused_or_unreadable(data):
    for text, verify in ((CREATED, verify_created), (GOT, verify_got)):
        places = [p for p, _ in paths(json.loads(text))]
        path = data.draw(st.sampled_from(places))
        new = data.draw(st.one_of(field, attestation_like, client_data_like, hostile_text))
        changed = replaced(text, path, new)
        outcome(verify, changed)
        outcome(credential_id_of, changed)
        outcome(user_handle_of, changed)


@PROPERTY
@given(
    st.sampled_from(["clientDataJSON", "attestationObject", "authenticatorData", "signature"]),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_a_valid_answer_with_bytes_changed_is_refused_or_unreadable(name, flips):
    for text, verify in ((CREATED, verify_created), (GOT, verify_got)):
        value = json.loads(text)
        if name not in value["response"]:
            continue
        original = unb64url(value["response"][name])
        raw = bytearray(original)
        for index, mask in flips:
            raw[index % len(raw)] ^= mask
        if raw == original:  # two flips of one bit
            continue
        value["response"][name] = b64url(bytes(raw))
        changed = json.dumps(value)
        try:
            verify(changed)
        except EXPECTED:
            continue
        # Only the registration, whose "none" attestation signs nothing, may still verify
        # with a byte changed, and then never for another RP id, origin or challenge.
        assert verify is verify_created


@PROPERTY
@given(st.one_of(hostile_text, st.text(max_size=80), st.sampled_from(TEXT_ATOMS)))
def test_a_name_is_refused_or_kept_clean(text):
    try:
        name = validate_name(text)
    except InvalidPasskey:
        return
    assert name == text.strip() and 1 <= len(name) <= passkeys.MAX_NAME_CHARS
    assert not any(c in name for c in "\x00\n\r\t\u2028\u2029\u202e\u200b\ufeff")


@pytest.mark.parametrize(
    "change",
    [
        {"challenge": b""},
        {"challenge": "c" * 32},
        {"rp_id": "https://acme.ontrack.test"},
        {"rp_id": ""},
        {"origin": ["https://acme.ontrack.test"]},
        {"origin": ""},
    ],
)
def test_the_verifications_refuse_bad_arguments(change):
    created = {"challenge": ARGS["created"], "rp_id": HOST, "origin": ORIGIN}
    with pytest.raises(ValueError):
        verify_registration(CREATED, **{**created, **change}, require_user_verification=True)
    got = {"challenge": ARGS["got"], "rp_id": HOST, "origin": ORIGIN}
    with pytest.raises(ValueError):
        verify_authentication(
            GOT,
            **{**got, **change},
            public_key=ARGS["key"],
            stored_sign_count=0,
            require_user_verification=True,
        )


cose_like = st.dictionaries(
    st.sampled_from([1, 3, -1, -2, -3, 4]),
    st.one_of(
        st.sampled_from([1, 2, 3, 6, 7, -7, -8, -257, -36]), st.integers(), st.binary(max_size=70)
    ),
    max_size=6,
).map(cbor2.dumps)


# Mostly what passes this module's reading (UP, UV and AT set, no extensions, nothing after
# the key), so that py_webauthn's parsing and checks are what is reached.
readable_flags = st.one_of(
    st.sampled_from([0x45, 0x45 | 0x08, 0x45 | 0x18, 0x45 | 0x10]), st.integers(0, 255)
)
formats = st.sampled_from(["none", "none", "none", "packed", "fido-u2f", "tpm", "apple", "x"])
statements = st.one_of(
    st.just({}),
    st.dictionaries(st.sampled_from(["alg", "sig", "x5c", "ver"]), cbor_values, max_size=3),
)


@PROPERTY
@given(
    flags=readable_flags,
    count=st.integers(0, 2**32 - 1),
    key=st.one_of(cose_like, cbor_values.map(cbor2.dumps)),
    tail=st.one_of(st.just(b""), st.binary(max_size=8)),
    fmt=formats,
    statement=statements,
)
def test_hostile_authenticator_data_in_a_valid_envelope_is_refused_or_unreadable(
    flags, count, key, tail, fmt, statement
):
    """The envelope, client data and credential id are right; what the authenticator put
    in the attestation object is anything, down to the COSE key, so py_webauthn's own
    parsing is reached."""
    value = json.loads(CREATED)
    credential_id = unb64url(value["rawId"])
    auth_data = (
        attestation_of(value)["authData"][:32]
        + bytes([flags])
        + count.to_bytes(4, "big")
        + bytes(16)
        + len(credential_id).to_bytes(2, "big")
        + credential_id
        + key
        + tail
    )
    attestation = {"fmt": fmt, "attStmt": statement, "authData": auth_data}
    value["response"]["attestationObject"] = b64url(cbor2.dumps(attestation))
    outcome(verify_created, json.dumps(value))


@PROPERTY
@given(
    flags=st.one_of(st.integers(0, 0x3F), st.integers(0, 255)),
    count=st.integers(0, 2**32 - 1),
    tail=st.one_of(st.just(b""), st.binary(max_size=40)),
)
def test_hostile_assertion_data_in_a_valid_envelope_is_refused_or_unreadable(flags, count, tail):
    value = json.loads(GOT)
    auth_data = unb64url(value["response"]["authenticatorData"])[:32]
    auth_data += bytes([flags]) + count.to_bytes(4, "big") + tail
    value["response"]["authenticatorData"] = b64url(auth_data)
    outcome(verify_got, json.dumps(value))
