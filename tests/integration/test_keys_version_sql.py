"""The data key version as SQL reads it from a ciphertext (core/keys/reencrypt.py) is the
version core/keys/fields.py wrote, for every size of version: the re-encryption job and its
progress select and count rows by it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from ontrackio.core.keys import fields
from ontrackio.core.keys.reencrypt import EncryptedColumn

KEY = bytes(range(32))
VERSIONS = [1, 2, 255, 256, 65_535, 65_536, 16_777_215, 16_777_216, fields.MAX_VERSION]


@pytest.mark.integration
def test_sql_reads_the_version_fields_wrote(infrastructure):
    column = EncryptedColumn("t", "v")
    blobs = [fields.seal(KEY, v, b"aad", b"x") for v in VERSIONS]
    query = sql.SQL("SELECT {} FROM (SELECT unnest(%s::bytea[]) AS v) AS t").format(
        column.version_expr()
    )
    with psycopg.connect(infrastructure.pg_dsn, autocommit=True) as conn:
        read = [r[0] for r in conn.execute(query, (blobs,))]
    assert read == VERSIONS == [fields.version_of(b) for b in blobs]
