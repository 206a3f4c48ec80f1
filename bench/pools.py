"""Pools: many tenants, a skewed request mix, one process, the platform's per-process cap.

500 privacy tenant databases are provisioned with core.db.provisioning.Provisioner under a
separate deployment name (no directory entries are needed: the bench talks to them through
TenantDatabases with TenantInfo values it makes itself). Then THREADS threads (the api's
default gRPC worker count) each make requests whose tenant is drawn from a Zipf-like
distribution (weight 1/rank^S): acquire a connection as the tenant's login role, run one
small query, release. A sampler counts this deployment's backends in pg_stat_activity.

Baseline: the same requests with a plain psycopg.connect (and close) per request.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path
from typing import Self

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.common import figure, log, percentile
from ontrackio.core.config import Settings
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.runtime import service_dir

SERVICE = "privacy"
THREADS = 16
ZIPF_S = 1.1
P99_GOAL_MS = 50.0
QUERY = "SELECT count(*) FROM data_subjects"


def provision(settings: Settings, slugs: list[str], concurrency: int = 4) -> float:
    clusters = Clusters(settings)
    p = Provisioner(SERVICE, clusters, mig.for_service(service_dir(SERVICE)),
                    settings.deployment, settings.tenant_role_secret.get_secret_value())
    p.ensure_template("main")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda s: p.provision(s, "main"), slugs))
    return time.perf_counter() - t0


def _pg_port(dsn: str) -> int:
    return int(conninfo_to_dict(dsn).get("port") or 5432)


def _held_sockets(port: int, exclude: set[int]) -> int:
    """TCP connections from this process to PostgreSQL's port (Linux /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    inodes -= exclude
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "01" and int(f[2].rsplit(":", 1)[1], 16) == port and int(f[9]) in inodes:
                n += 1
    return n


class Sampler:
    """Samples, every `interval`, the PostgreSQL connections this process holds (its own
    sockets) and the deployment's backends as the server lists them (pg_stat_activity,
    which also shows backends still exiting after their client closed)."""

    def __init__(self, admin_dsn: str, deployment: str, interval: float = 0.01):
        self.admin_dsn, self.pattern, self.interval = admin_dsn, f"{deployment}\\_%", interval
        self.port = _pg_port(admin_dsn)
        self.max_held = 0
        self.max_server = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            own = {os.fstat(conn.fileno()).st_ino}
            while not self._stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename LIKE %s",
                                 (self.pattern,)).fetchone()[0]
                self.max_server = max(self.max_server, n)
                self.max_held = max(self.max_held, _held_sockets(self.port, own))
                self.samples += 1
                time.sleep(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _drive(slugs: list[str], per_thread: int, request,
           rate: float | None = None) -> tuple[list[float], float]:
    """Run `request(slug) -> acquire seconds` from THREADS threads, back to back or, with
    `rate`, paced so that all threads together offer `rate` requests/s (open loop: a late
    request is sent at once). Returns (acquire times, achieved requests/s)."""
    cum = list(accumulate(1.0 / (rank ** ZIPF_S) for rank in range(1, len(slugs) + 1)))
    times: list[float] = []
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.05

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        mine = []
        for k, slug in enumerate(rnd.choices(slugs, cum_weights=cum, k=per_thread)):
            if rate is not None:
                delay = t0 + (k * THREADS + seed) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            mine.append(request(slug))
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, len(times) / (time.perf_counter() - t0)


def run(settings: Settings, admin_dsn: str, slugs: list[str], per_thread: int = 400,
        paced_rate: float = 150.0, paced_seconds: float = 15.0) -> list[dict]:
    clusters = Clusters(settings)
    cap = settings.pool_max_per_process

    def manager() -> tuple[PoolManager, TenantDatabases]:
        pools = PoolManager(max_total=cap, max_per_tenant=settings.pool_max_per_tenant,
                            idle_seconds=settings.pool_idle_seconds,
                            acquire_timeout=settings.pool_acquire_timeout)
        return pools, TenantDatabases(SERVICE, deployment=settings.deployment,
                                      clusters=clusters, pools=pools,
                                      directory=TenantDirectory(lambda s: None, 0),
                                      publisher=None)

    infos = {s: TenantInfo(s, "active", "main", "business") for s in slugs}

    def pooled(dbs: TenantDatabases, errors: list[str]):
        def request(slug: str) -> float:
            t0 = time.perf_counter()
            try:
                with dbs.connection(infos[slug]) as conn:
                    acquired = time.perf_counter() - t0
                    conn.execute(QUERY).fetchone()
                    conn.rollback()
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(type(exc).__name__)
                return time.perf_counter() - t0
            return acquired
        return request

    def plain(slug: str) -> float:
        t0 = time.perf_counter()
        with psycopg.connect(clusters.tenant_conninfo(SERVICE, slug, "main")) as conn:
            acquired = time.perf_counter() - t0
            conn.execute(QUERY).fetchone()
        return acquired

    ms = 1000.0
    with Sampler(admin_dsn, settings.deployment) as s_plain:
        plain_times, plain_rate = _drive(slugs, per_thread, plain)
    log(f"pools plain connect: p99 {percentile(plain_times, 99) * ms:.1f} ms, "
        f"{plain_rate:.0f} req/s, held {s_plain.max_held}, server {s_plain.max_server}")
    pools, dbs = manager()
    with Sampler(admin_dsn, settings.deployment) as s_pool:
        errors: list[str] = []
        pool_times, pool_rate = _drive(slugs, per_thread, pooled(dbs, errors))
        stats = pools.stats()
    pools.close()
    log(f"pools PoolManager: p99 {percentile(pool_times, 99) * ms:.1f} ms, {pool_rate:.0f} "
        f"req/s, held {s_pool.max_held}, server {s_pool.max_server}, {stats}")

    paced_per_thread = max(1, int(paced_rate * paced_seconds / THREADS))
    plain_paced, _ = _drive(slugs, paced_per_thread, plain, paced_rate)
    pools2, dbs2 = manager()
    with Sampler(admin_dsn, settings.deployment) as s_paced:
        errors2: list[str] = []
        paced_times, paced_achieved = _drive(slugs, paced_per_thread, pooled(dbs2, errors2),
                                             paced_rate)
        stats2 = pools2.stats()
    pools2.close()
    log(f"pools PoolManager at {paced_rate:.0f}/s: p99 {percentile(paced_times, 99) * ms:.1f} "
        f"ms, held {s_paced.max_held}, {stats2}")

    n = len(pool_times)
    common = (f"{len(slugs)} {SERVICE} tenant databases, {THREADS} threads (the api's gRPC "
              f"workers), tenant drawn with weight 1/rank^{ZIPF_S}; caps "
              f"ONTRACK_POOL_MAX_PER_PROCESS={cap}, _PER_TENANT={settings.pool_max_per_tenant}")
    err = f"; {len(errors)} failed: {sorted(set(errors))}" if errors else ""
    err2 = f"; {len(errors2)} failed: {sorted(set(errors2))}" if errors2 else ""
    held = max(s_pool.max_held, s_paced.max_held)
    p99, p99_plain = percentile(pool_times, 99) * ms, percentile(plain_times, 99) * ms
    p99_paced, p99_plain_paced = percentile(paced_times, 99) * ms, percentile(plain_paced, 99) * ms
    return [
        figure("pools: max connections held by one process", held, s_plain.max_held,
               "connections", f"<= cap ({cap})", held <= cap,
               f"{common}. Counted as this process's TCP connections to PostgreSQL, sampled "
               f"every 10 ms; pg_stat_activity showed at most {s_pool.max_server} backends "
               f"of the deployment (it also lists backends still exiting after an eviction "
               f"closed them). Baseline = one psycopg.connect per request (max held). Pool: "
               f"{stats.opened} connections opened for {n} requests, {stats.evicted} LRU "
               f"evictions"),
        figure("pools: p99 connection acquisition, saturated", p99, p99_plain, "ms",
               f"<= {P99_GOAL_MS:.0f} ms", p99 <= P99_GOAL_MS and not errors,
               f"{common}; {THREADS} x {per_thread} requests back to back (no think time). "
               f"Acquisition = entering TenantDatabases.connection(), including waiting for "
               f"the cap; p50 {percentile(pool_times, 50) * ms:.1f} ms, {pool_rate:.0f} req/s. "
               f"Baseline = psycopg.connect time per request: p50 "
               f"{percentile(plain_times, 50) * ms:.1f} ms, {plain_rate:.0f} req/s{err}"),
        figure(f"pools: p99 connection acquisition at {paced_rate:.0f} req/s", p99_paced,
               p99_plain_paced, "ms", f"<= {P99_GOAL_MS:.0f} ms",
               p99_paced <= P99_GOAL_MS and not errors2,
               f"{common}; offered {paced_rate:.0f} req/s for ~{paced_seconds:.0f} s "
               f"(achieved {paced_achieved:.0f}); p50 {percentile(paced_times, 50) * ms:.1f} "
               f"ms; {stats2.opened} connections opened for {len(paced_times)} requests. "
               f"Baseline = psycopg.connect per request at the same pace{err2}"),
    ]
