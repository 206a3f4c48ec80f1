"""Tenant roles: what each may do (rules.py), who holds which (store.py)."""
