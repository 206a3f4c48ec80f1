"""Session-authenticated requests against token-authenticated ones through the gateway:
what checking a session cookie adds to a request's p99, on the same endpoint.

``GET /api/v1/users/{id}`` (the signed-in user's own record: one GetUser upstream either way)
with the ``__Host-ontrack_session`` cookie of a user signed in through SAML, and with an API
token's ``Authorization: Bearer``; both warm in the gateway's caches (sessions and tokens are
cached alike, gateway/auth/session.py and bearer.py). Concurrency 1, one keep-alive
connection per window; windows of ``seconds`` alternate between the kinds (the leading kind
rotating) for ``rounds`` rounds, and each kind's latencies are pooled. Also, as information,
``GET /api/v1/session`` (who am I: GetSession upstream) with the same cookie, against the
token's GET.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.common import figure, percentile

GOAL_MS = 1.0
SESSION_COOKIE = "__Host-ontrack_session"


def _get(path: str, host: str, header: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{header}\r\n\r\n".encode()


def run(ctx: dict[str, Any], *, rounds: int = 8, seconds: float = 1.0) -> tuple[list[dict], dict]:
    """(figures, raw) against the gateway ``ctx`` names (bench.saml.end_to_end's context:
    port, host, cookie, user_id, token)."""
    from bench.gateway import _http_load

    port, host = ctx["port"], ctx["host"]
    path = f"/api/v1/users/{ctx['user_id']}"
    cookie = f"Cookie: {SESSION_COOKIE}={ctx['cookie']}"
    kinds = {
        "token": _get(path, host, f"Authorization: Bearer {ctx['token']}"),
        "session": _get(path, host, cookie),
        "who am I": _get("/api/v1/session", host, cookie),
    }
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    statuses: dict[str, dict[int, int]] = {k: {} for k in kinds}
    for request in kinds.values():  # warm every worker's caches and connections
        asyncio.run(_http_load(port, [request], 4, 0.5))
    names = list(kinds)
    for i in range(rounds):
        for kind in names[i % len(names) :] + names[: i % len(names)]:
            _, lat, st = asyncio.run(_http_load(port, [kinds[kind]], 1, seconds))
            latencies[kind] += lat
            for code, n in st.items():
                statuses[kind][code] = statuses[kind].get(code, 0) + n
    for kind, st in statuses.items():
        if set(st) != {200}:
            raise RuntimeError(f"{kind} requests were not all answered 200: {st}")

    def ms(kind: str, p: float) -> float:
        return percentile(latencies[kind], p) * 1000

    added = ms("session", 99) - ms("token", 99)
    who_added = ms("who am I", 99) - ms("token", 99)
    counts = ", ".join(f"{k} {len(v)}" for k, v in latencies.items())
    rows = [
        figure(
            "session vs token: p99 added, GET /api/v1/users/{id} (concurrency 1)",
            added,
            ms("token", 99),
            "ms",
            f"<= {GOAL_MS:g} ms",
            added <= GOAL_MS,
            f"p99 session {ms('session', 99):.2f} ms, token {ms('token', 99):.2f} ms; p50 "
            f"{ms('session', 50):.2f} vs {ms('token', 50):.2f} ms; {rounds} alternating "
            f"rounds of {seconds:g} s per kind, requests {counts}",
        ),
        figure(
            "session GET /api/v1/session vs token GET /api/v1/users/{id}: p99 added",
            who_added,
            ms("token", 99),
            "ms",
            "",
            None,
            f"p99 who-am-I {ms('who am I', 99):.2f} ms, p50 {ms('who am I', 50):.2f} ms "
            "(GetSession upstream instead of GetUser; same windows as the row above)",
        ),
    ]
    for row in rows:  # a difference of latencies: value / baseline means nothing
        row["ratio"] = None
    return rows, {
        kind: {
            "requests": len(latencies[kind]),
            **{f"p{p:g}_ms": round(ms(kind, p), 3) for p in (50, 90, 99, 99.9)},
        }
        for kind in kinds
    }
