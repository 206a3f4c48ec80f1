"""Identity's multi-factor authentication factors, as pure rules (no database, no network):
time-based one-time passwords (``totp``: secrets, the enrolment URI and its QR code, and
checking a typed code without letting it be used twice) and single-use recovery codes
(``recovery``: generation, the canonical form and the keyed hash that is stored). Passkeys
(WebAuthn) and the organisation's MFA policy follow as modules of their own.
"""
