"""Events: identity's outbox → RabbitMQ → privacy's worker (inbox + effect), vs bare kombu.

Ours, API-driven: users are created through identity's UserService (each CreateUser commits
the user and an `identity.user_created` outbox row and hands the event to the api's relay,
which gathers batches for up to 20 ms, publishes them with pipelined publisher confirms, the
events of one routing key in one message (a pack), and marks the rows sent); privacy's
worker consumes in batches and records data subjects with their inbox rows, a tenant's
batch in one transaction. Timestamps are the database's: users.created_at (the producing
transaction) and data_subjects.first_seen_at (the consuming transaction), read as admin
afterwards.

Ours, from the outbox onward: this process writes `identity.user_created` outbox rows
itself with TenantDatabases.unit_of_work + uow.emit (no gRPC call, no users row) and the
platform's own Relay publishes them; the consumer side is the same worker.

Bare: one producer publishing persistent JSON messages with publisher confirms to a topic
exchange, one event per message, one consumer process acknowledging each; times are
time.time() on both sides.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid

import kombu
import psycopg
from kombu import Exchange
from psycopg.conninfo import make_conninfo

from bench.common import ROOT, failed, figure, log, percentile, wait_until
from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import bus
from ontrackio.core import relay as relay_mod
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.grpcserver import TENANT_METADATA
from ontrackio.core.relay import Relay
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import events_pb2 as ipb_events
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc

RATE_GOAL = 0.5
P99_GOAL_MS = 250.0
PACED_RATE = 500.0
PACED_ROUNDS = 3
API_INFO = (
    "Informational: the issue's events figure starts at the outbox (the rows 'outbox -> "
    "...'); this one adds identity's CreateUser (gRPC, users row, ~1.4 ms of the api's CPU "
    "per call, measured), which on this 2-core machine shares the cores with the consumers, "
    "the broker, PostgreSQL and the load generator"
)


# -- ours ---------------------------------------------------------------------------------------


async def _produce(
    open_channel, slugs: list[str], count: int, concurrency: int, rate: float | None
) -> float:
    """CreateUser `count` times round-robin over `slugs`; open loop at `rate`/s when given
    (at most 256 calls in flight), else closed loop with `concurrency` callers. Returns
    the achieved calls/s."""
    tag = uuid.uuid4().hex[:8]
    async with open_channel() as ch:
        stub = igrpc.UserServiceStub(ch)

        async def one(i: int) -> None:
            slug = slugs[i % len(slugs)]
            await stub.CreateUser(
                ipb.CreateUserRequest(email=f"u{i}-{tag}@bench.example", display_name=f"U {i}"),
                metadata=((TENANT_METADATA, slug),),
                timeout=30,
            )

        t0 = time.perf_counter()
        if rate is None:
            nxt = iter(range(count))

            async def caller() -> None:
                for i in nxt:
                    await one(i)

            await asyncio.gather(*(caller() for _ in range(concurrency)))
        else:
            gate = asyncio.Semaphore(256)
            tasks = []

            async def limited(i: int) -> None:
                async with gate:
                    await one(i)

            for i in range(count):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(limited(i)))
            await asyncio.gather(*tasks)
        return count / (time.perf_counter() - t0)


def _db(stack, service: str, slug: str) -> str:
    db = Names(stack.deployment, service).tenant_database(slug)
    return make_conninfo(stack.pg_dsn, dbname=db)


def _applied(stack, slugs: list[str]) -> int:
    total = 0
    for slug in slugs:
        with psycopg.connect(_db(stack, "privacy", slug)) as conn:
            total += conn.execute("SELECT count(*) FROM data_subjects").fetchone()[0]
    return total


def _subjects(stack, slugs: list[str]) -> set[str]:
    ids: set[str] = set()
    for slug in slugs:
        with psycopg.connect(_db(stack, "privacy", slug)) as conn:
            ids.update(r[0] for r in conn.execute("SELECT user_id::text FROM data_subjects"))
    return ids


def _timings(stack, slugs: list[str], exclude: set[str]) -> tuple[list[float], float, float]:
    """Per event latency (s), and the first produce / last apply epoch seconds, over the
    users created through the API whose data subject is not in `exclude` (earlier runs;
    rows written by the outbox-onward runs have no users row and are skipped anyway)."""
    created: dict[str, float] = {}
    applied: dict[str, float] = {}
    for slug in slugs:
        with psycopg.connect(_db(stack, "identity", slug)) as conn:
            created.update(
                (str(i), t)
                for i, t in conn.execute(
                    "SELECT id, extract(epoch FROM created_at)::float8 FROM users"
                )
            )
        with psycopg.connect(_db(stack, "privacy", slug)) as conn:
            applied.update(
                (str(i), t)
                for i, t in conn.execute(
                    "SELECT user_id, extract(epoch FROM first_seen_at)::float8 FROM data_subjects"
                )
            )
    keys = [k for k in applied if k in created and k not in exclude]
    lat = [applied[k] - created[k] for k in keys]
    return lat, min(created[k] for k in keys), max(applied[k] for k in keys)


class Stalled(Exception):
    """The consumer made no progress for STALL_S seconds (its workers are stuck)."""


STALL_S = 30.0


def _wait_applied(stack, slugs: list[str], count: int, timeout: float) -> None:
    """Wait until `count` events are applied; raise Stalled if progress stops."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        n = _applied(stack, slugs)
        if n >= count:
            return
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        elif now - last_change > STALL_S:
            raise Stalled(
                f"privacy applied {n} of {count} events and then nothing for {STALL_S:.0f} s"
            )
        if now > deadline:
            raise TimeoutError(f"privacy applied {n} of {count} events in {timeout:.0f} s")
        time.sleep(0.1)


def warm_up(stack, slugs: list[str]) -> None:
    """One event per tenant, all at once (concurrent directory look-ups in the workers),
    so first-use costs (connections, look-ups) stay out of the measured runs."""
    before = _applied(stack, slugs)
    asyncio.run(
        _produce(lambda: stack.aio_channel("identity"), slugs, len(slugs), len(slugs), None)
    )
    wait_until(
        lambda: _applied(stack, slugs) >= before + len(slugs), 30, 0.05, "warm-up events applied"
    )


def run_ours(
    stack,
    slugs: list[str],
    count: int,
    concurrency: int,
    rate: float | None,
    timeout: float = 180.0,
) -> dict:
    before = _subjects(stack, slugs)
    produced = asyncio.run(
        _produce(lambda: stack.aio_channel("identity"), slugs, count, concurrency, rate)
    )
    _wait_applied(stack, slugs, len(before) + count, timeout)
    lat, first, last = _timings(stack, slugs, exclude=before)
    return {
        "produced_per_s": produced,
        "events_per_s": count / (last - first),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000,
        "n": len(lat),
    }


# -- ours, from the outbox onward ----------------------------------------------------------------


class _Writer:
    """The platform's writing side in this process: TenantDatabases for identity with its
    own PoolManager and the platform's Relay (ONTRACK_RELAY_PUBLISHERS publishers)."""

    def __init__(self, stack, max_total: int = 8):
        settings = stack.settings()
        self.publishers = settings.relay_publishers
        self.pools = PoolManager(
            max_total=max_total,
            max_per_tenant=2,
            idle_seconds=settings.pool_idle_seconds,
            acquire_timeout=settings.pool_acquire_timeout,
        )
        self.relay = Relay([Publisher(stack.amqp_url) for _ in range(self.publishers)], self.pools)
        self.dbs = TenantDatabases(
            "identity",
            deployment=stack.deployment,
            clusters=Clusters(settings),
            pools=self.pools,
            directory=TenantDirectory(lambda s: None, 0),
            publisher=None,
            relay=self.relay,
            events=DEPLOYMENT.events,
        )

    def close(self) -> None:
        self.relay.close()
        self.pools.close()


def _user_created(i: int, tag: str) -> tuple[str, ipb_events.UserCreated]:
    user_id = str(uuid.uuid4())
    return user_id, ipb_events.UserCreated(
        user_id=user_id, email=f"o{i}-{tag}@bench.example", display_name=f"O {i}"
    )


def _applied_at(stack, slugs: list[str], ids: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for slug in slugs:
        with psycopg.connect(_db(stack, "privacy", slug)) as conn:
            for i, t in conn.execute(
                "SELECT user_id::text, extract(epoch FROM first_seen_at)::float8 FROM data_subjects"
            ):
                if i in ids:
                    out[i] = t
    return out


def run_outbox_burst(stack, slugs: list[str], count: int, timeout: float = 180.0) -> dict:
    """`count` identity.user_created events written as outbox rows, one transaction per
    tenant (all tenants in parallel, committed together), then relayed by the platform's
    Relay and applied by privacy's worker. Rate = count / (last apply - commit)."""
    per = count // len(slugs)
    tag = uuid.uuid4().hex[:8]
    writer = _Writer(stack)
    infos = {s: TenantInfo(s, "active", "main", "business") for s in slugs}
    barrier = threading.Barrier(len(slugs) + 1)
    ids: list[str] = []
    lock = threading.Lock()

    def write(k: int, slug: str) -> None:
        with writer.dbs.unit_of_work(infos[slug]) as uow:
            mine = []
            for i in range(per):
                user_id, msg = _user_created(k * per + i, tag)
                uow.emit("identity.user_created", msg)
                mine.append(user_id)
            with lock:
                ids.extend(mine)
            barrier.wait()

    base = _applied(stack, slugs)
    threads = [threading.Thread(target=write, args=(k, s)) for k, s in enumerate(slugs)]
    try:
        for t in threads:
            t.start()
        barrier.wait(timeout=120)
        t_commit = time.time()
        for t in threads:
            t.join()
        committed = time.time() - t_commit
        writer.relay.flush(timeout=60)
        relayed = time.time() - t_commit
        _wait_applied(stack, slugs, base + per * len(slugs), timeout)
    finally:
        writer.close()
    applied = _applied_at(stack, slugs, set(ids))
    lat = [t - t_commit for t in applied.values()]
    last = max(applied.values())
    return {
        "events_per_s": len(ids) / (last - t_commit),
        "n": len(ids),
        "per_tenant": per,
        "commit_s": committed,
        "relayed_s": relayed,
        "applied_s": last - t_commit,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "publishers": writer.publishers,
    }


def _warm(stack, writer: _Writer, infos: dict[str, TenantInfo], tag: str) -> None:
    """One event per tenant through `writer`, applied before returning: the writer's
    connections and publishers are open and the consumers' tenant connections are fresh,
    so first-use costs stay out of the timed window."""
    base = _applied(stack, list(infos))
    for k, info in enumerate(infos.values()):
        with writer.dbs.unit_of_work(info) as uow:
            uow.emit("identity.user_created", _user_created(-1 - k, tag)[1])
    writer.relay.flush(timeout=30)
    _wait_applied(stack, list(infos), base + len(infos), 60)


def run_outbox_paced(
    stack, slugs: list[str], count: int, rate: float, threads: int = 8, timeout: float = 180.0
) -> dict:
    """`count` units of work of one event each, offered open loop at `rate`/s by `threads`
    writer threads over `slugs`; latency = first_seen_at - the writer's time.time() right
    after the unit's commit. The writer and the consumers are warmed first (`_warm`)."""
    tag = uuid.uuid4().hex[:8]
    writer = _Writer(stack)
    infos = {s: TenantInfo(s, "active", "main", "business") for s in slugs}
    committed: dict[str, float] = {}
    lock = threading.Lock()
    try:
        _warm(stack, writer, infos, tag)
    except BaseException:
        writer.close()
        raise
    t0 = time.perf_counter() + 0.05
    wall0 = time.time() + 0.05

    def work(seed: int) -> None:
        mine = {}
        for i in range(seed, count, threads):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            user_id, msg = _user_created(i, tag)
            with writer.dbs.unit_of_work(infos[slugs[i % len(slugs)]]) as uow:
                uow.emit("identity.user_created", msg)
            mine[user_id] = time.time()
        with lock:
            committed.update(mine)

    base = _applied(stack, slugs)
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        achieved = count / (time.time() - wall0)
        _wait_applied(stack, slugs, base + count, timeout)
    finally:
        writer.close()
    applied = _applied_at(stack, slugs, set(committed))
    lat = [applied[k] - committed[k] for k in applied]
    return {
        "achieved_per_s": achieved,
        "n": len(lat),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000,
        "publishers": writer.publishers,
    }


def run_outbox_paced_rounds(
    stack, slugs: list[str], count: int, rate: float, rounds: int = PACED_ROUNDS
) -> dict:
    """`rounds` paced runs; the figure is the round with the median p99 (a tail statistic
    of one 8 s window moves a lot with what else the shared machine does), all are kept."""
    runs = [run_outbox_paced(stack, slugs, count, rate) for _ in range(rounds)]
    chosen = dict(sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2])
    chosen["rounds"] = runs
    return chosen


# -- bare ---------------------------------------------------------------------------------------


def run_bare(amqp_url: str, count: int, rate: float | None) -> dict:
    queue = f"bench.bare.{uuid.uuid4().hex[:8]}"
    consumer = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_consumer", amqp_url, queue, str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bare consumer did not start: {consumer.stderr.read()[-2000:]}")
        exchange = Exchange("bench.events", type="topic", durable=True)
        payload = {"user_id": "", "email": "someone@bench.example", "display_name": "Someone"}
        with kombu.Connection(
            amqp_url, transport_options={"confirm_publish": True}, connect_timeout=5
        ) as conn:
            producer = kombu.Producer(conn)
            t0 = time.perf_counter()
            first = time.time()
            for i in range(count):
                if rate is not None:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                producer.publish(
                    {"id": str(uuid.uuid4()), "t": time.time(), "payload": payload},
                    exchange=exchange,
                    routing_key="bench.user_created",
                    serializer="json",
                    delivery_mode=2,
                    declare=[exchange],
                )
            produced = count / (time.perf_counter() - t0)
        out, _err = consumer.communicate(timeout=120)
        data = json.loads(out.strip().splitlines()[-1])
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    lat = data["latencies"]
    if len(lat) < count:
        raise RuntimeError(f"bare consumer got {len(lat)} of {count} messages")
    return {
        "produced_per_s": produced,
        "events_per_s": count / (data["last"] - first),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000,
        "n": len(lat),
    }


# -- figures ------------------------------------------------------------------------------------


def run(
    stack,
    throughput_slugs: list[str],
    paced_slugs: list[str],
    *,
    count: int = 3000,
    concurrency: int = 16,
    paced_seconds: float = 8.0,
    on_stall=None,
    raw: dict | None = None,
) -> list[dict]:
    """The event figures. `on_stall(reason)` is called when the consumer stops making
    progress (it should restart the stuck workers); that figure is then NOT MEASURED."""
    amqp = stack.amqp_url
    paced_n = int(PACED_RATE * paced_seconds)
    raw = {} if raw is None else raw
    warm_up(stack, throughput_slugs + paced_slugs)
    figs = []

    def attempt(name: str, unit: str, goal: str, fn):
        try:
            return fn()
        except Stalled as exc:
            if on_stall:
                on_stall(str(exc))
            figs.append(failed(name, unit, goal, exc))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            figs.append(failed(name, unit, goal, exc))
        return None

    max_goal = f"ratio >= {RATE_GOAL}"
    bare = run_bare(amqp, count, None)
    raw["bare_max"] = bare
    log(
        f"events bare max rate: {bare['events_per_s']:.0f}/s, producer "
        f"{bare['produced_per_s']:.0f}/s (p99 {bare['p99_ms']:.1f} ms)"
    )
    bare_note = (
        f"Baseline: one kombu producer publishing persistent messages with confirms "
        f"({bare['produced_per_s']:.0f}/s), one consumer process acking each (p99 "
        f"{bare['p99_ms']:.1f} ms)"
    )

    name = "events: API -> outbox -> relay -> RabbitMQ -> inbox, max rate"
    ours = attempt(
        name,
        "events/s",
        max_goal,
        lambda: run_ours(stack, throughput_slugs, count, concurrency, None),
    )
    if ours:
        raw["api_max"] = ours
        log(
            f"events ours (API) max rate: {ours['events_per_s']:.0f}/s, CreateUser "
            f"{ours['produced_per_s']:.0f}/s (p99 {ours['p99_ms']:.1f} ms)"
        )
        figs.append(
            figure(
                name,
                ours["events_per_s"],
                bare["events_per_s"],
                "events/s",
                "info",
                None,
                f"{count} users created through identity's UserService by {concurrency} concurrent "
                f"gRPC callers over {len(throughput_slugs)} tenants (CreateUser returned at "
                f"{ours['produced_per_s']:.0f}/s); rate = events / (last "
                f"data_subjects.first_seen_at - first users.created_at); p50 {ours['p50_ms']:.0f} "
                f"ms, p99 {ours['p99_ms']:.0f} ms. {bare_note}. Ours includes the gRPC call and "
                f"the users row: it is the rate of the whole user-creation path, bounded by "
                f"CreateUser's own rate. {API_INFO}",
            )
        )

    name = "events: outbox -> relay -> RabbitMQ -> inbox, max rate"
    burst = attempt(
        name, "events/s", max_goal, lambda: run_outbox_burst(stack, throughput_slugs, count)
    )
    if burst:
        raw["outbox_max"] = burst
        log(
            f"events ours (outbox) max rate: {burst['events_per_s']:.0f}/s (committed "
            f"+{burst['commit_s']:.2f} s, relayed +{burst['relayed_s']:.2f} s, applied "
            f"+{burst['applied_s']:.2f} s)"
        )
        figs.append(
            figure(
                name,
                burst["events_per_s"],
                bare["events_per_s"],
                "events/s",
                max_goal,
                burst["events_per_s"] >= RATE_GOAL * bare["events_per_s"],
                f"{burst['n']} identity.user_created outbox rows written by the bench process "
                f"through TenantDatabases.unit_of_work + uow.emit, one transaction of "
                f"{burst['per_tenant']} rows per tenant over {len(throughput_slugs)} tenants, "
                f"committed together; the platform's Relay ({burst['publishers']} publishers, "
                f"batches of <= {relay_mod.MAX_BATCH} units gathered for <= "
                f"{relay_mod.GATHER_SECONDS * 1000:.0f} ms, pipelined confirms, the events of one "
                f"routing key in one message of <= {bus.MAX_PACK}, rows marked sent "
                f"by one UPDATE per database) publishes them; privacy's worker consumes them in "
                f"batches and applies each once with its inbox row. "
                f"After the commit: all published and marked sent at +{burst['relayed_s']:.2f} s, "
                f"all applied at +{burst['applied_s']:.2f} s; rate = events / (last "
                f"first_seen_at - commit). No gRPC call and no users row: this is the event "
                f"pipeline alone. {bare_note}",
            )
        )

    bare_paced = run_bare(amqp, paced_n, PACED_RATE)
    raw["bare_paced"] = bare_paced
    log(
        f"events bare at {PACED_RATE:.0f}/s: achieved {bare_paced['produced_per_s']:.0f}/s, "
        f"p99 {bare_paced['p99_ms']:.1f} ms"
    )
    bare_paced_note = (
        f"Baseline = bare kombu offered the same pace (achieved "
        f"{bare_paced['produced_per_s']:.0f}/s, p50 "
        f"{bare_paced['p50_ms']:.1f} ms)"
    )
    p_goal = f"<= {P99_GOAL_MS:.0f} ms"

    name = f"events: outbox -> inbox, p99 latency at {PACED_RATE:.0f} events/s"
    paced = attempt(
        name,
        "ms",
        p_goal,
        lambda: run_outbox_paced_rounds(stack, paced_slugs, paced_n, PACED_RATE),
    )
    if paced:
        raw["outbox_paced"] = paced
        log(
            f"events ours (outbox) at {PACED_RATE:.0f}/s: achieved "
            f"{paced['achieved_per_s']:.0f}/s, p99 {paced['p99_ms']:.1f} ms"
        )
        held = paced["achieved_per_s"] >= 0.95 * PACED_RATE
        figs.append(
            figure(
                name,
                paced["p99_ms"],
                bare_paced["p99_ms"],
                "ms",
                p_goal,
                paced["p99_ms"] <= P99_GOAL_MS and held,
                f"{paced['n']} units of work of one identity.user_created event each, offered "
                f"open loop at {PACED_RATE:.0f}/s by 8 writer threads in the bench process over "
                f"{len(paced_slugs)} tenants (achieved {paced['achieved_per_s']:.0f}/s"
                + ("" if held else ", pace NOT held")
                + f"); the platform's Relay "
                f"({paced['publishers']} publishers) publishes; latency = "
                f"data_subjects.first_seen_at - the writer's clock right after the commit; p50 "
                f"{paced['p50_ms']:.0f} ms, max {paced['max_ms']:.0f} ms. Writer and consumers "
                f"warmed with one event per tenant first. The round with the median p99 of "
                f"{len(paced['rounds'])} (p99s "
                + ", ".join(f"{r['p99_ms']:.0f}" for r in paced["rounds"])
                + f" ms). {bare_paced_note}. Met only if the pace was also held",
            )
        )

    name = f"events: API-driven, p99 latency at {PACED_RATE:.0f} events/s offered"
    ours_paced = attempt(
        name, "ms", p_goal, lambda: run_ours(stack, paced_slugs, paced_n, concurrency, PACED_RATE)
    )
    if ours_paced:
        raw["api_paced"] = ours_paced
        log(
            f"events ours (API) at {PACED_RATE:.0f}/s: achieved "
            f"{ours_paced['produced_per_s']:.0f}/s, p99 {ours_paced['p99_ms']:.1f} ms"
        )
        held = ours_paced["produced_per_s"] >= 0.95 * PACED_RATE
        figs.append(
            figure(
                name,
                ours_paced["p99_ms"],
                bare_paced["p99_ms"],
                "ms",
                "info",
                None,
                f"{paced_n} users offered at a paced (open-loop) {PACED_RATE:.0f}/s over "
                f"{len(paced_slugs)} tenants (at most 256 calls in flight); CreateUser achieved "
                f"{ours_paced['produced_per_s']:.0f}/s"
                + ("" if held else " (pace NOT held)")
                + f"; latency = data_subjects.first_seen_at - users.created_at (both database "
                f"clock), p50 {ours_paced['p50_ms']:.0f} ms, max {ours_paced['max_ms']:.0f} ms. "
                f"{bare_paced_note}. {API_INFO}",
            )
        )
    return figs
