"""SCRAM-SHA-256 password verifiers as PostgreSQL stores them (``pg_authid.rolpassword``).

Roles get their passwords as verifiers computed client-side (libpq's
``PQencryptPasswordConn``), so no statement, and no server log line of a failed one, ever
holds a password. ``verifier_matches`` tells whether a stored verifier belongs to a password
(RFC 5802 / RFC 7677: the stored key is SHA-256 of HMAC(SaltedPassword, "Client Key")), so
a role is re-keyed only when its derived password has changed. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

PREFIX = "SCRAM-SHA-256$"
# SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, each part base64.
_VERIFIER = re.compile(
    r"SCRAM-SHA-256\$(?P<iterations>[1-9][0-9]{0,9}):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)\Z"
)
MAX_ITERATIONS = 10_000_000  # far above any server's scram_iterations; bounds the work


def verifier_matches(verifier: str | None, password: str) -> bool:
    """True when ``verifier`` is a SCRAM-SHA-256 verifier of ``password``.

    False for anything else: None (no password), an MD5 hash or plaintext, a malformed
    verifier, or a non-ASCII password (the server would SASLprep it first; the derived
    passwords are ASCII). Compares in constant time.
    """
    m = _VERIFIER.match(verifier or "")
    if m is None or not password.isascii():
        return False
    iterations = int(m["iterations"])
    if iterations > MAX_ITERATIONS:
        return False
    try:
        salt = base64.b64decode(m["salt"], validate=True)
        stored = base64.b64decode(m["stored"], validate=True)
        server = base64.b64decode(m["server"], validate=True)
    except (binascii.Error, ValueError):
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), stored)
    server_ok = hmac.compare_digest(server_key, server)
    return stored_ok and server_ok
