"""A process's tenants' data keys: fetched wrapped from the key store, unwrapped by the
key provider on first use, kept in memory for a bounded time.

Contract:
- `key(info, version)` and `current(info)` give a tenant's plaintext data key (and the
  tenant id it is bound to); `field_key` and `current_field_key` the same key as a
  `fields.FieldKey`, its cipher made once when the key was unwrapped (what FieldCipher
  uses). The first use costs one key-store look-up (identity) and one KMS unwrap per
  version; later uses are a dictionary look-up until `ttl` seconds passed.
- Fail closed: when the provider cannot unwrap (the tenant's KEK disabled, pending
  deletion, its grant revoked, the KMS unreachable) every use raises KeyUnavailable for
  `retry` seconds, after which the KMS is asked again; nothing is served from a key the
  KMS refused. Other tenants are not affected. A key disabled while its data keys are
  cached stops that tenant within `ttl` (the cost of not asking the KMS on every field).
- Recovery needs no restart: the first successful unwrap after a failure serves again.
- Nothing is kept past its time: entries older than `ttl` are swept (at most every `ttl`),
  so a tenant no longer used leaves no plaintext key behind in the process.
- `on_unavailable(info, cause)` and `on_restored(info)` are told each change of a tenant's
  state (not each refused use), for the audit trail; metrics count every refusal.

The key store is injected (`source`): identity's processes read the control database,
every other service asks identity over gRPC (identity/client.py). The provider is
injected too (core/keys/provider.py), so this class does no I/O of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ontrackio.core import metrics
from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import FieldUnreadable, KeyUnavailable
from ontrackio.core.keys.fields import FieldKey
from ontrackio.core.keys.kms import InvalidKey, KeyProvider, context_of

log = logging.getLogger(__name__)

MAX_CACHED_TENANTS = 10_000


@dataclass(frozen=True)
class WrappedKey:
    version: int
    kek: str
    wrapped: bytes


@dataclass(frozen=True)
class KeyRing:
    """A tenant's data keys of one service, as the key store holds them."""

    tenant_id: str
    current: int
    keys: tuple[WrappedKey, ...]


# The key store as a process reaches it: (tenant) -> that tenant's key ring for this service.
KeySource = Callable[[TenantInfo], KeyRing]


@dataclass
class _Entry:
    at: float
    tenant_id: str = ""
    current: int = 0
    keys: dict[int, FieldKey] = field(default_factory=dict)
    failure: KeyUnavailable | None = None
    until: float = 0.0  # served from the cache while the clock is before this (at + ttl)


class TenantKeys:
    def __init__(
        self,
        service: str,
        deployment: str,
        provider: KeyProvider,
        source: KeySource,
        *,
        ttl: float,
        retry: float,
        clock: Callable[[], float] = time.monotonic,
        on_unavailable: Callable[[TenantInfo, str], None] | None = None,
        on_restored: Callable[[TenantInfo], None] | None = None,
    ):
        self.service = service
        self._deployment = deployment
        self._provider = provider
        self._source = source
        self._ttl = ttl
        self._retry = retry
        self._clock = clock
        self._on_unavailable = on_unavailable
        self._on_restored = on_restored
        self._entries: dict[str, _Entry] = {}
        self._swept_at = clock()
        self._lock = threading.Lock()
        self._refused = {
            cause: metrics.KEY_REFUSALS.labels(service, cause) for cause in KeyUnavailable.CAUSES
        }
        self._unwraps = {
            ok: metrics.KEY_UNWRAPS.labels(service, "ok" if ok else "refused")
            for ok in (True, False)
        }

    def current(self, info: TenantInfo) -> tuple[str, int, bytes]:
        """(tenant id, current version, its key) of the tenant; raises KeyUnavailable."""
        tenant_id, key = self.current_field_key(info)
        return tenant_id, key.version, key.key

    def key(self, info: TenantInfo, version: int) -> tuple[str, bytes]:
        """(tenant id, the key of `version`). A version newer than the cached ring (rotated
        meanwhile) makes it fetch the ring once; a version the ring lacks is the stored
        value's fault (FieldUnreadable "bad version"), not the key's."""
        tenant_id, key = self.field_key(info, version)
        return tenant_id, key.key

    def current_field_key(self, info: TenantInfo) -> tuple[str, FieldKey]:
        """`current`, the key ready to seal with (its version is `.version`)."""
        entry = self._entries.get(info.slug)  # one dict read: atomic, no lock needed
        if entry is None or entry.failure is not None or self._clock() >= entry.until:
            entry = self._entry(info)
        return entry.tenant_id, entry.keys[entry.current]

    def field_key(self, info: TenantInfo, version: int) -> tuple[str, FieldKey]:
        """`key`, the key ready to open with."""
        entry = self._entries.get(info.slug)
        if entry is None or entry.failure is not None or self._clock() >= entry.until:
            entry = self._entry(info)
        if version not in entry.keys and version > entry.current:
            entry = self._entry(info, refresh=True)
        try:
            return entry.tenant_id, entry.keys[version]
        except KeyError:
            raise FieldUnreadable("bad_version") from None

    def forget(self, slug: str) -> None:
        """Drop the tenant's cached keys (after a rotation, re-wrap or deletion)."""
        with self._lock:
            self._entries.pop(slug, None)

    def unavailable(self) -> int:
        """Tenants whose key this process could not use at its last attempt (a gauge)."""
        with self._lock:
            return sum(1 for e in self._entries.values() if e.failure is not None)

    # -- internals --------------------------------------------------------------------------

    def _refuse(self, exc: KeyUnavailable) -> KeyUnavailable:
        self._refused[exc.cause].inc()
        return exc

    def _entry(self, info: TenantInfo, refresh: bool = False) -> _Entry:
        now = self._clock()
        if now - self._swept_at > self._ttl:
            with self._lock:
                self._sweep(now)
        entry = self._entries.get(info.slug)  # one dict read: atomic, no lock needed
        if entry is not None and not refresh:
            if entry.failure is not None and now - entry.at < self._retry:
                raise self._refuse(entry.failure)
            if entry.failure is None and now < entry.until:
                return entry
        was_failing = entry is not None and entry.failure is not None
        valid = entry is not None and not was_failing and now < entry.until
        try:
            fresh = self._load(info, now)
        except KeyUnavailable as exc:
            self._unwraps[False].inc()
            if valid:  # a failed refresh does not take away keys still within their time
                raise self._refuse(exc) from None
            with self._lock:
                self._store(info.slug, _Entry(now, failure=exc))
            if not was_failing:
                log.warning("tenant %s: data keys unavailable (%s)", info.slug, exc.cause)
                if self._on_unavailable is not None:
                    self._on_unavailable(info, exc.cause)
            raise self._refuse(exc) from None
        self._unwraps[True].inc()
        with self._lock:
            self._store(info.slug, fresh)
        if was_failing:
            log.info("tenant %s: data keys available again", info.slug)
            if self._on_restored is not None:
                self._on_restored(info)
        return fresh

    def _sweep(self, now: float) -> None:
        """Drop every entry past its time (caller holds the lock): a tenant nobody uses any
        more (deleted, moved away) must not keep its plaintext keys in this process."""
        keep = max(self._ttl, self._retry)
        for slug in [s for s, e in self._entries.items() if now - e.at >= keep]:
            del self._entries[slug]
        self._swept_at = now

    def _store(self, slug: str, entry: _Entry) -> None:
        if len(self._entries) >= MAX_CACHED_TENANTS and slug not in self._entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest inserted
        self._entries[slug] = entry

    def _load(self, info: TenantInfo, now: float) -> _Entry:
        ring = self._source(info)
        try:
            keys = {
                k.version: FieldKey(
                    self._provider.unwrap(
                        k.kek,
                        k.wrapped,
                        context_of(self._deployment, ring.tenant_id, self.service, k.version),
                    ),
                    k.version,
                )
                for k in ring.keys
            }
        except InvalidKey:  # a stored KEK no longer acceptable (e.g. its region removed)
            raise KeyUnavailable("invalid") from None
        if ring.current not in keys:
            raise KeyUnavailable("not_found")
        return _Entry(now, ring.tenant_id, ring.current, keys, until=now + self._ttl)
