"""Events: identity's outbox → RabbitMQ → privacy's worker (inbox + effect), vs bare kombu.

Ours: users are created through identity's UserService (each CreateUser commits the user
and an `identity.user_created` outbox row, then publishes it with a publisher confirm and
marks it sent); privacy's worker records a data subject with its inbox row in one
transaction. Timestamps are the database's: users.created_at (the producing transaction)
and data_subjects.first_seen_at (the consuming transaction), read as admin afterwards.

Bare: one producer publishing persistent JSON messages with publisher confirms to a topic
exchange, one consumer process acknowledging each; times are time.time() on both sides.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import grpc
import kombu
import psycopg
from kombu import Exchange
from psycopg.conninfo import make_conninfo

from bench.common import ROOT, failed, figure, log, percentile, wait_until
from ontrackio.core.grpcserver import TENANT_METADATA
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc

RATE_GOAL = 0.5
P99_GOAL_MS = 250.0
PACED_RATE = 500.0


# -- ours ---------------------------------------------------------------------------------------

async def _produce(target: str, slugs: list[str], count: int, concurrency: int,
                   rate: float | None) -> float:
    """CreateUser `count` times round-robin over `slugs`; open loop at `rate`/s when given
    (at most 256 calls in flight), else closed loop with `concurrency` callers. Returns
    the achieved calls/s."""
    tag = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(target) as ch:
        stub = igrpc.UserServiceStub(ch)

        async def one(i: int) -> None:
            slug = slugs[i % len(slugs)]
            await stub.CreateUser(ipb.CreateUserRequest(email=f"u{i}-{tag}@bench.example",
                                                        display_name=f"U {i}"),
                                  metadata=((TENANT_METADATA, slug),), timeout=30)

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


def _timings(stack, slugs: list[str], skip: int = 0) -> tuple[list[float], float, float]:
    """Per event latency (s), and the first produce / last apply epoch seconds, over the
    events after the `skip` earliest ones (the warm-up)."""
    created: dict[str, float] = {}
    applied: dict[str, float] = {}
    for slug in slugs:
        with psycopg.connect(_db(stack, "identity", slug)) as conn:
            created.update((str(i), t) for i, t in conn.execute(
                "SELECT id, extract(epoch FROM created_at)::float8 FROM users"))
        with psycopg.connect(_db(stack, "privacy", slug)) as conn:
            applied.update((str(i), t) for i, t in conn.execute(
                "SELECT user_id, extract(epoch FROM first_seen_at)::float8 FROM data_subjects"))
    keys = sorted((k for k in applied if k in created), key=created.get)[skip:]
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
            raise Stalled(f"privacy applied {n} of {count} events and then nothing for "
                          f"{STALL_S:.0f} s")
        if now > deadline:
            raise TimeoutError(f"privacy applied {n} of {count} events in {timeout:.0f} s")
        time.sleep(0.1)


def warm_up(stack, slugs: list[str]) -> None:
    """One event per tenant, one at a time, so each worker's tenant directory is filled
    without concurrent look-ups (see docs/bench.md: concurrent look-ups can deadlock)."""
    for slug in slugs:
        before = _applied(stack, [slug])
        asyncio.run(_produce(stack.target("identity"), [slug], 1, 1, None))
        wait_until(lambda s=slug, b=before: _applied(stack, [s]) > b, 30, 0.05,
                   f"warm-up event of {slug} applied")


def run_ours(stack, slugs: list[str], count: int, concurrency: int, rate: float | None,
             timeout: float = 180.0) -> dict:
    base = _applied(stack, slugs)
    produced = asyncio.run(_produce(stack.target("identity"), slugs, count, concurrency, rate))
    _wait_applied(stack, slugs, base + count, timeout)
    lat, first, last = _timings(stack, slugs, skip=base)
    return {"produced_per_s": produced, "events_per_s": count / (last - first),
            "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": max(lat) * 1000, "n": len(lat)}


# -- bare ---------------------------------------------------------------------------------------

def run_bare(amqp_url: str, count: int, rate: float | None) -> dict:
    queue = f"bench.bare.{uuid.uuid4().hex[:8]}"
    consumer = subprocess.Popen([sys.executable, "-m", "bench.bare_consumer", amqp_url, queue,
                                 str(count)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bare consumer did not start: {consumer.stderr.read()[-2000:]}")
        exchange = Exchange("bench.events", type="topic", durable=True)
        payload = {"user_id": "", "email": "someone@bench.example", "display_name": "Someone"}
        with kombu.Connection(amqp_url, transport_options={"confirm_publish": True},
                              connect_timeout=5) as conn:
            producer = kombu.Producer(conn)
            t0 = time.perf_counter()
            first = time.time()
            for i in range(count):
                if rate is not None:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                producer.publish({"id": str(uuid.uuid4()), "t": time.time(), "payload": payload},
                                 exchange=exchange, routing_key="bench.user_created",
                                 serializer="json", delivery_mode=2, declare=[exchange])
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
    return {"produced_per_s": produced, "events_per_s": count / (data["last"] - first),
            "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "max_ms": max(lat) * 1000, "n": len(lat)}


# -- figures ------------------------------------------------------------------------------------

def run(stack, throughput_slugs: list[str], paced_slugs: list[str], *, count: int = 3000,
        concurrency: int = 16, paced_seconds: float = 8.0, on_stall=None) -> list[dict]:
    """The two event figures. `on_stall(reason)` is called when the consumer stops making
    progress (it should restart the stuck workers); that figure is then NOT MEASURED."""
    amqp = stack.amqp_url
    paced_n = int(PACED_RATE * paced_seconds)
    warm_up(stack, throughput_slugs + paced_slugs)
    figs = []

    max_name, max_goal = "events: outbox -> RabbitMQ -> inbox, max rate", f"ratio >= {RATE_GOAL}"
    bare = run_bare(amqp, count, None)
    log(f"events bare max rate: {bare['events_per_s']:.0f}/s, producer "
        f"{bare['produced_per_s']:.0f}/s (p99 {bare['p99_ms']:.1f} ms)")
    try:
        ours = run_ours(stack, throughput_slugs, count, concurrency, None)
    except Stalled as exc:
        if on_stall:
            on_stall(str(exc))
        figs.append(failed(max_name, "events/s", max_goal, exc))
    else:
        log(f"events ours max rate: {ours['events_per_s']:.0f}/s, producer "
            f"{ours['produced_per_s']:.0f}/s (p99 {ours['p99_ms']:.1f} ms)")
        figs.append(figure(
            max_name, ours["events_per_s"], bare["events_per_s"], "events/s", max_goal,
            ours["events_per_s"] >= RATE_GOAL * bare["events_per_s"],
            f"{count} users created through identity's UserService by {concurrency} concurrent "
            f"gRPC callers over {len(throughput_slugs)} tenants (CreateUser returned at "
            f"{ours['produced_per_s']:.0f}/s); rate = events / (last "
            f"data_subjects.first_seen_at - first users.created_at); p50 {ours['p50_ms']:.0f} "
            f"ms, p99 {ours['p99_ms']:.0f} ms. Baseline: one kombu producer publishing "
            f"persistent messages with confirms ({bare['produced_per_s']:.0f}/s), one consumer "
            f"process acking each (p99 {bare['p99_ms']:.1f} ms). Ours includes the gRPC call "
            f"and the users row: it is the rate of the whole user-creation path"))

    p_name, p_goal = f"events: p99 latency at {PACED_RATE:.0f} events/s", f"<= {P99_GOAL_MS:.0f} ms"
    bare_paced = run_bare(amqp, paced_n, PACED_RATE)
    log(f"events bare at {PACED_RATE:.0f}/s: achieved {bare_paced['produced_per_s']:.0f}/s, "
        f"p99 {bare_paced['p99_ms']:.1f} ms")
    try:
        ours_paced = run_ours(stack, paced_slugs, paced_n, concurrency, PACED_RATE)
    except Stalled as exc:
        if on_stall:
            on_stall(str(exc))
        figs.append(failed(p_name, "ms", p_goal, exc))
    else:
        log(f"events ours at {PACED_RATE:.0f}/s: achieved {ours_paced['produced_per_s']:.0f}/s, "
            f"p99 {ours_paced['p99_ms']:.1f} ms")
        held = ours_paced["produced_per_s"] >= 0.95 * PACED_RATE
        figs.append(figure(
            p_name, ours_paced["p99_ms"], bare_paced["p99_ms"], "ms", p_goal,
            ours_paced["p99_ms"] <= P99_GOAL_MS and held,
            f"{paced_n} users offered at a paced (open-loop) {PACED_RATE:.0f}/s over "
            f"{len(paced_slugs)} tenants; CreateUser achieved "
            f"{ours_paced['produced_per_s']:.0f}/s" + ("" if held else " (pace NOT held)")
            + f"; latency = data_subjects.first_seen_at - users.created_at (both database "
            f"clock), p50 {ours_paced['p50_ms']:.0f} ms, max {ours_paced['max_ms']:.0f} ms. "
            f"Baseline = bare kombu offered the same pace (achieved "
            f"{bare_paced['produced_per_s']:.0f}/s, p50 {bare_paced['p50_ms']:.1f} ms). Met "
            f"only if the pace was also held"))
    return figs
