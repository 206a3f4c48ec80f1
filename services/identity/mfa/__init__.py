"""Identity's multi-factor authentication.

Pure rules (no database, no network): time-based one-time passwords (``totp``: secrets,
the enrolment URI and its QR code, checking a typed code without letting it be used twice),
single-use recovery codes (``recovery``: generation, the canonical form and the keyed hash
that is stored), passkeys (``passkeys``: WebAuthn over py_webauthn, read strictly) and the
organisation's MFA policy (``policy``). Beside them: ``store`` (the rows), ``flow`` (the
steps, one transaction each), ``facts`` (evidence's figures) and ``api`` (the gRPC
MfaService).
"""
