"""Gateway figures for `make bench`, each measured in the same run as its baseline.

``run(ctx)`` takes the running Stack (or an object with ``.stack``) and returns figure dicts.
It starts a gateway process of its own on the same deployment, identical but for raised rate
limits (the edge's per-address and per-token limits would otherwise be what is measured), and
a one-worker gateway for the memory figure (so "one worker" is the whole process).

1. Throughput of authenticated ``GET /api/v1/assets/{id}`` through the gateway vs the same
   GetAsset made directly with grpc.aio, same concurrency (goal ≥ 0.5×); p99 added by the
   gateway at concurrency 1 (goal ≤ 5 ms).
2. A flood of invalid tokens: rejection rate vs valid-request rate (goal ≥ 3×), and the
   identity LookupToken calls the flood caused (goal 0: no database round trip).
3. RSS of a one-worker gateway at start and after 100,000 requests across 1,000 tenant hosts
   (a few real tenants with tokens, the rest unknown hosts answered from the negative cache).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = int(os.environ.get("BENCH_GATEWAY_CONCURRENCY", "32"))
SECONDS = float(os.environ.get("BENCH_GATEWAY_SECONDS", "5"))
REAL_TENANTS = int(os.environ.get("BENCH_GATEWAY_TENANTS", "10"))
MEMORY_REQUESTS = int(os.environ.get("BENCH_GATEWAY_MEMORY_REQUESTS", "100000"))
HOSTS = 1000


_AUTO = object()


def _figure(name, value, baseline, unit, goal, met, notes="", ratio=_AUTO) -> dict[str, Any]:
    """One figure; ``ratio`` is value / baseline unless given (None: not meaningful)."""
    if ratio is _AUTO:
        ratio = value / baseline if value is not None and baseline else None
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "unit": unit,
        "goal": goal,
        "met": bool(met),
        "notes": notes,
    }


def _p(values: list[float], pct: float) -> float:
    data = sorted(values)
    return data[max(0, min(len(data) - 1, int(len(data) * pct / 100 + 0.5) - 1))] if data else 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Gateway:
    """A gateway process of the bench's own on the stack's deployment."""

    def __init__(self, stack, workers: int):
        self.port = _free_port()
        self.ready_dir = tempfile.mkdtemp(prefix="bench-gateway-")
        env = {
            **stack.env(),
            "ONTRACK_GATEWAY_PORT": str(self.port),
            "ONTRACK_GATEWAY_WORKERS": str(workers),
            "ONTRACK_READY_DIR": self.ready_dir,
            "ONTRACK_LOG_LEVEL": "WARNING",
        }
        for knob in ("IP_PER_SECOND", "IP_BURST", "TOKEN_PER_SECOND", "TOKEN_BURST"):
            env[f"ONTRACK_GATEWAY_RATE_LIMIT_{knob}"] = "1000000"
        env["ONTRACK_GATEWAY_TOKEN_LOOKUP_PER_SECOND"] = "1000000"
        env["ONTRACK_GATEWAY_TOKEN_LOOKUP_BURST"] = "1000000"
        self.log = open(Path(self.ready_dir) / "gateway.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ontrackio.gateway.main"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while not (Path(self.ready_dir) / "gateway.ready").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bench gateway did not start; see {self.ready_dir}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# -- load generation (raw asyncio sockets, keep-alive) ----------------------------------------


async def _http_worker(
    port: int,
    requests: list[bytes],
    stop_at: float,
    limit: list[int],
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.monotonic() < stop_at and limit[0] > 0:
            limit[0] -= 1
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length: *([0-9]+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            latencies.append(time.perf_counter() - t0)
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _http_load(
    port: int, requests: list[bytes], concurrency: int, seconds: float, total: int = 10**12
) -> tuple[float, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limit = [total]
    t0 = time.monotonic()
    await asyncio.gather(
        *[
            _http_worker(
                port, requests[k::concurrency] or requests, t0 + seconds, limit, latencies, statuses
            )
            for k in range(concurrency)
        ]
    )
    elapsed = time.monotonic() - t0
    return len(latencies) / elapsed, latencies, statuses


async def _grpc_load(
    open_channel, slug: str, asset_id: str, concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    from ontrackio.inventory.v1 import inventory_pb2 as pb
    from ontrackio.inventory.v1 import inventory_pb2_grpc as pb_grpc

    latencies: list[float] = []
    async with open_channel() as channel:
        stub = pb_grpc.AssetServiceStub(channel)
        request = pb.GetAssetRequest(id=asset_id)
        metadata = (("x-ontrack-tenant", slug),)
        await stub.GetAsset(request, metadata=metadata, timeout=5)
        stop_at = time.monotonic() + seconds

        async def one() -> None:
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                await stub.GetAsset(request, metadata=metadata, timeout=5)
                latencies.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*[one() for _ in range(concurrency)])
        return len(latencies) / (time.monotonic() - t0), latencies


def _get(path: str, host: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


def _metric(port: int, name: str, **labels: str) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Host": "localhost"})
    text = conn.getresponse().read().decode()
    conn.close()
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}(?:_total)?{{(.*)}} ([0-9.e+]+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


# -- fixtures: tenants, tokens, an asset -------------------------------------------------------


def _tenants(stack, count: int) -> list[tuple[str, str, str]]:
    """(slug, bearer token, asset id) for `count` new active tenants."""
    from ontrackio.identity.v1 import access_pb2 as apb
    from ontrackio.identity.v1 import access_pb2_grpc as agrpc
    from ontrackio.identity.v1 import identity_pb2 as ipb
    from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
    from ontrackio.inventory.v1 import inventory_pb2 as vpb
    from ontrackio.inventory.v1 import inventory_pb2_grpc as vgrpc

    identity = stack.channel("identity", "operator")
    inventory = stack.channel("inventory", "operator")
    credentials = stack.channel("identity", "cli")  # only the gateway and the CLI mint tokens
    tenants = igrpc.TenantServiceStub(identity)
    slugs = [f"bg{uuid.uuid4().hex[:10]}" for _ in range(count)]
    for slug in slugs:
        tenants.CreateTenant(
            ipb.CreateTenantRequest(slug=slug, name=slug, tier=ipb.TIER_BUSINESS), timeout=30
        )
    deadline = time.monotonic() + 120
    for slug in slugs:
        while (
            tenants.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5).status
            != ipb.TENANT_STATUS_ACTIVE
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"tenant {slug} not active")
            time.sleep(0.1)
    out = []
    for slug in slugs:
        md = (("x-ontrack-tenant", slug),)
        token = agrpc.AccessServiceStub(credentials).CreateToken(
            apb.CreateTokenRequest(name="bench", scopes=["api:read"]), metadata=md, timeout=10
        )
        asset = vgrpc.AssetServiceStub(inventory).CreateAsset(
            vpb.CreateAssetRequest(name="bench laptop", kind="hardware"), metadata=md, timeout=10
        )
        out.append((slug, token.secret, asset.id))
    identity.close()
    inventory.close()
    credentials.close()
    return out


# -- the figures -------------------------------------------------------------------------------


def _throughput_and_latency(stack, tenant) -> list[dict[str, Any]]:
    slug, token, asset_id = tenant
    gw = _Gateway(stack, workers=int(os.environ.get("BENCH_GATEWAY_WORKERS", "2")))

    def direct():  # the gateway's own hop: mutual TLS as the gateway
        return stack.aio_channel("inventory", "gateway")

    try:
        host = f"{slug}.localhost:{gw.port}"
        req = [_get(f"/api/v1/assets/{asset_id}", host, token)]
        asyncio.run(_http_load(gw.port, req, 4, 1.0))  # warm caches and connections
        via_rate, via_lat, statuses = asyncio.run(_http_load(gw.port, req, CONCURRENCY, SECONDS))
        direct_rate, direct_lat = asyncio.run(
            _grpc_load(direct, slug, asset_id, CONCURRENCY, SECONDS)
        )
        _, via1, _ = asyncio.run(_http_load(gw.port, req, 1, SECONDS / 2))
        _, direct1 = asyncio.run(_grpc_load(direct, slug, asset_id, 1, SECONDS / 2))
        ok = statuses.get(200, 0) / max(1, sum(statuses.values()))
        added = (_p(via1, 99) - _p(direct1, 99)) * 1000

        # Flood of invalid tokens (forged ids, garbage) vs the valid rate just measured.
        lookups_before = _metric(gw.port, "ontrack_gateway_upstream_calls", method="LookupToken")
        forged = "otk_" + "0" * 24 + token[28:]
        bad = [
            _get(f"/api/v1/assets/{asset_id}", host, t)
            for t in (forged, "garbage", token[:-1], "otk_" + "f" * 24 + token[28:])
        ]
        flood_rate, _, flood_statuses = asyncio.run(_http_load(gw.port, bad, CONCURRENCY, SECONDS))
        lookups = (
            _metric(gw.port, "ontrack_gateway_upstream_calls", method="LookupToken")
            - lookups_before
        )
    finally:
        gw.stop()
    return [
        _figure(
            "gateway GET /api/v1/assets/{id} throughput vs direct grpc.aio",
            via_rate,
            direct_rate,
            "req/s",
            "ratio >= 0.5",
            via_rate >= 0.5 * direct_rate,
            f"concurrency {CONCURRENCY}, {SECONDS:g} s each, 2xx share {ok:.3f}, "
            f"gateway workers {os.environ.get('BENCH_GATEWAY_WORKERS', '2')}; "
            f"p99 at this concurrency {_p(via_lat, 99) * 1000:.1f} ms vs "
            f"{_p(direct_lat, 99) * 1000:.1f} ms",
        ),
        _figure(
            "gateway p99 latency added (concurrency 1)",
            added,
            _p(direct1, 99) * 1000,
            "ms",
            "<= 5 ms",
            added <= 5.0,
            f"p99 via gateway {_p(via1, 99) * 1000:.2f} ms, direct "
            f"{_p(direct1, 99) * 1000:.2f} ms; p50 {_p(via1, 50) * 1000:.2f} vs "
            f"{_p(direct1, 50) * 1000:.2f} ms",
            ratio=None,
        ),
        _figure(
            "gateway invalid-token flood rejected vs valid rate",
            flood_rate,
            via_rate,
            "req/s",
            "ratio >= 3",
            flood_rate >= 3 * via_rate,
            f"statuses {flood_statuses}; identity LookupToken calls during the flood: "
            f"{lookups:.0f} (goal 0: no database round trip per request)",
        ),
        _figure(
            "gateway identity look-ups caused by the flood",
            lookups,
            0.0,
            "calls",
            "== 0",
            lookups == 0,
            "counted at the gateway (/metrics upstream calls)",
            ratio=None,
        ),
    ]


def _memory(stack, tenants) -> list[dict[str, Any]]:
    gw = _Gateway(stack, workers=1)
    try:
        requests = []
        for i in range(HOSTS):
            if i < len(tenants):
                slug, token, asset_id = tenants[i]
                requests.append(
                    _get(f"/api/v1/assets/{asset_id}", f"{slug}.localhost:{gw.port}", token)
                )
            else:
                requests.append(
                    _get(
                        "/api/v1/assets",
                        f"bench{i:05d}x.localhost:{gw.port}",
                        "otk_" + "0" * 24 + "_" + "a" * 43,
                    )
                )
        asyncio.run(_http_load(gw.port, requests, 16, 60.0, total=2 * HOSTS))  # warm
        start = _rss_kib(gw.proc.pid)
        t0 = time.monotonic()
        _, _, statuses = asyncio.run(
            _http_load(gw.port, requests, 16, 600.0, total=MEMORY_REQUESTS)
        )
        seconds = time.monotonic() - t0
        end = _rss_kib(gw.proc.pid)
    finally:
        gw.stop()
    growth = (end - start) / 1024
    return [
        _figure(
            "gateway worker RSS after 100k requests across 1,000 tenant hosts",
            end / 1024,
            start / 1024,
            "MiB",
            "flat (growth <= 10 MiB)",
            growth <= 10,
            f"{MEMORY_REQUESTS} requests in {seconds:.0f} s over {HOSTS} hosts "
            f"({len(tenants)} real tenants with tokens, the rest unknown hosts); "
            f"statuses {statuses}; growth {growth:.1f} MiB",
        )
    ]


def run(ctx) -> list[dict[str, Any]]:
    stack = getattr(ctx, "stack", ctx)
    for key, value in stack.env().items():  # in-process clients use the same deployment
        if key.startswith("ONTRACK_"):
            os.environ[key] = value
    tenants = _tenants(stack, max(1, REAL_TENANTS))
    figures = _throughput_and_latency(stack, tenants[0])
    figures += _memory(stack, tenants)
    return figures
