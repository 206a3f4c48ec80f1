"""Envelope encryption: key providers (KMS), tenants' data keys, encrypted fields."""
