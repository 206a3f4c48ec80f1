"""Signed-in sessions: the cookie's rules (rules.py) and the sessions table (store.py)."""
