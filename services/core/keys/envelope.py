"""Encrypted fields: the one API the services use to keep a value encrypted at rest.

``encrypt(info, table, column, row_id, value)`` seals a value under the tenant's current
data key (AES-256-GCM, core/keys/fields.py) with associated data binding the tenant id,
table, column and row id, so a ciphertext copied to another row, column or tenant does
not decrypt. ``decrypt`` reads the data key version from the ciphertext, so values sealed
under an older version stay readable after a rotation. Both raise KeyUnavailable while the
tenant's key cannot be used (core/keys/ring.py) and FieldUnreadable for a ciphertext that
does not open where it is read (moved, tampered). Store the result in a ``bytea`` column.
"""

from __future__ import annotations

from ontrackio.core.directory import TenantInfo
from ontrackio.core.keys import fields
from ontrackio.core.keys.ring import TenantKeys


class FieldCipher:
    def __init__(self, keys: TenantKeys):
        self.keys = keys

    def _sealing(self, info: TenantInfo, table: str, column: str, row_id: object):
        tenant_id, version, key = self.keys.current(info)
        return key, version, fields.aad(tenant_id, table, column, str(row_id))

    def _opening(self, info: TenantInfo, table: str, column: str, row_id: object, blob: bytes):
        tenant_id, key = self.keys.key(info, fields.version_of(blob))
        return key, fields.aad(tenant_id, table, column, str(row_id)), bytes(blob)

    def encrypt(
        self, info: TenantInfo, table: str, column: str, row_id: object, value: bytes
    ) -> bytes:
        key, version, aad = self._sealing(info, table, column, row_id)
        return fields.seal(key, version, aad, value)

    def decrypt(
        self, info: TenantInfo, table: str, column: str, row_id: object, blob: bytes
    ) -> bytes:
        return fields.unseal(*self._opening(info, table, column, row_id, blob))

    def encrypt_text(
        self, info: TenantInfo, table: str, column: str, row_id: object, value: str
    ) -> bytes:
        key, version, aad = self._sealing(info, table, column, row_id)
        return fields.seal_text(key, version, aad, value)

    def decrypt_text(
        self, info: TenantInfo, table: str, column: str, row_id: object, blob: bytes
    ) -> str:
        return fields.unseal_text(*self._opening(info, table, column, row_id, blob))

    def ready(self, info: TenantInfo) -> None:
        """Load the tenant's keys now (no-op when cached): call it before opening a
        transaction, so that a first use's key-store and KMS round trips, or a refusal,
        never hold a database connection."""
        self.keys.current(info)

    def current_version(self, info: TenantInfo) -> int:
        return self.keys.current(info)[1]
