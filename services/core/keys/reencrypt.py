"""After a data key rotation: re-encrypt a tenant's older values under the current version.

Every service names its encrypted columns in its contract (``Contract.encrypted``); the
worker's ``handle_data_keys_rotated`` walks them with ``reencrypt``. The job is resumable
without bookkeeping: a value's data key version is in its ciphertext (core/keys/fields.py,
bytes 2-5), so each batch selects only values under another version than the current one,
and a crash or a restart leaves every value readable and the rest for the next run (the
event is redelivered until the handler finishes). Batches are small transactions with
``FOR UPDATE SKIP LOCKED`` (a concurrent writer is never blocked for long), paced to
``rows_per_second``.

``status`` counts each column's values per version: the progress the CLI shows.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql

from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import FieldUnreadable

log = logging.getLogger(__name__)

BATCH_ROWS = 100
IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
# The big-endian version in bytes 2-5 of a ciphertext (fields.py), as SQL reads it.
# PostgreSQL gives << and | the same precedence, left to right: every shift in parentheses.
VERSION_SQL = (
    "((get_byte({c}, 1) << 24) | (get_byte({c}, 2) << 16)"
    " | (get_byte({c}, 3) << 8) | get_byte({c}, 4))"
)


@dataclass(frozen=True)
class EncryptedColumn:
    """A bytea column holding values sealed by FieldCipher with (table, column, row id)
    as associated data, the row id being `id_column`'s value."""

    table: str
    column: str
    id_column: str = "id"

    def __post_init__(self) -> None:
        for part in (self.table, self.column, self.id_column):
            if not IDENTIFIER_RE.match(part):
                raise ValueError(f"not a plain SQL identifier: {part!r}")

    def version_expr(self) -> sql.Composable:
        return sql.SQL(VERSION_SQL.replace("{c}", "{0}")).format(sql.Identifier(self.column))


def _older_than_current(col: EncryptedColumn, batch: int) -> sql.Composed:
    """Rows of `col` under another version than the current (%s), but those skipped (%s)."""
    return sql.SQL(
        "SELECT {id}, {col} FROM {table} WHERE {col} IS NOT NULL AND length({col}) >= 5"
        " AND {version} <> %s AND NOT ({id}::text = ANY(%s))"
        " LIMIT {batch} FOR UPDATE SKIP LOCKED"
    ).format(
        id=sql.Identifier(col.id_column),
        col=sql.Identifier(col.column),
        table=sql.Identifier(col.table),
        version=col.version_expr(),
        batch=sql.Literal(batch),
    )


def reencrypt(
    rt,
    info: TenantInfo,
    columns: tuple[EncryptedColumn, ...],
    rows_per_second: float,
    *,
    batch: int = BATCH_ROWS,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt every value of `columns` not under the tenant's current data key version;
    the number re-encrypted. Raises KeyUnavailable (nothing half-done: each batch commits
    whole) and Unavailable like any unit of work. `on_batch(n)` after each committed batch.
    A value that does not open where it is stored (FieldUnreadable: tampered, or copied
    from another row) is left as it is, logged, and not tried again by this run."""
    done = 0
    for col in columns:
        query = _older_than_current(col, batch)
        update = sql.SQL("UPDATE {table} SET {col} = %s WHERE {id} = %s").format(
            table=sql.Identifier(col.table),
            col=sql.Identifier(col.column),
            id=sql.Identifier(col.id_column),
        )
        skipped: list[str] = []
        while True:
            started = time.monotonic()
            current = rt.fields.current_version(info)
            with rt.dbs.unit_of_work(info) as u:
                rows = u.conn.execute(query, (current, skipped)).fetchall()
                for row_id, blob in rows:
                    try:
                        value = rt.fields.decrypt(info, col.table, col.column, row_id, blob)
                    except FieldUnreadable:
                        log.error(
                            "tenant %s: %s.%s of row %s does not decrypt; left as it is",
                            info.slug,
                            col.table,
                            col.column,
                            row_id,
                        )
                        skipped.append(str(row_id))
                        continue
                    new = rt.fields.encrypt(info, col.table, col.column, row_id, value)
                    u.conn.execute(update, (new, row_id))
            done += len(rows)
            if on_batch is not None and rows:
                on_batch(len(rows))
            if len(rows) < batch:
                break
            pause = len(rows) / rows_per_second - (time.monotonic() - started)
            if pause > 0:
                sleep(pause)
    return done


def status(
    rt, info: TenantInfo, columns: tuple[EncryptedColumn, ...]
) -> list[tuple[EncryptedColumn, dict[int, int]]]:
    """Each column's non-null values counted per data key version."""
    out = []
    with rt.dbs.unit_of_work(info) as u:
        for col in columns:
            counts = u.conn.execute(
                sql.SQL(
                    "SELECT {version}, count(*) FROM {table} WHERE {col} IS NOT NULL GROUP BY 1"
                ).format(
                    version=col.version_expr(),
                    table=sql.Identifier(col.table),
                    col=sql.Identifier(col.column),
                )
            ).fetchall()
            out.append((col, {int(v): int(n) for v, n in counts}))
    return out
