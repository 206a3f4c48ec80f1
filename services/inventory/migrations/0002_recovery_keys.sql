-- Disk-encryption recovery keys of assets (BitLocker, FileVault), encrypted with the
-- tenant's data key (core/keys/envelope.py: AES-256-GCM, bound to tenant, table, column
-- and row id). Never stored in plaintext.
ALTER TABLE assets ADD COLUMN recovery_key bytea;
