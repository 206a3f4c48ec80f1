"""The audit trail every service database keeps: append-only, hash-chained, anchored.

``chain`` is the canonical encoding and hash (pure); ``log`` appends and reads entries;
``verify`` checks a database's chain against its last anchor; ``anchor`` records chain
heads in the control database. The tables and the append function are the core migration
``0002_audit.sql``.
"""
