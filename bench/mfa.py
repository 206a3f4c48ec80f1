"""MFA through the gateway against the libraries it is built on, in the same run: TOTP
step-up verifications per second against ``pyotp``, passwordless passkey sign-ins per
second against ``py_webauthn``'s ``verify_authentication_response``, on the same inputs.

Set-up (untimed), on a gateway of the bench's own (bench.gateway._Gateway: the stack's, two
workers, rate limits raised) and one new tenant:

- ``users`` people made with UserService.CreateUser, each given a full session seeded in
  the tenant's database (as tests/e2e/sessions_kit.py does), with which they enrol, through
  the gateway's JSON API, an authenticator app (``POST /api/v1/mfa/totp``, then
  ``/api/v1/mfa/totp/confirm`` with the current code) and a passkey
  (``/api/v1/mfa/passkeys/options``, ``/api/v1/mfa/passkeys``; tests/soft_webauthn.py's
  ES256 authenticator, counting signatures).
- The tenant's MFA policy set to ``everyone``; then one session per person seeded at stage
  ``step_up`` (migration 0010's ``stage`` column), with its cookie and CSRF token.

**TOTP verifications/s**: each person posts one valid code to ``POST /api/v1/mfa/verify``
with their held session (one verification each: a verification rotates the session, and a
code is accepted once). The code is of the current step, or of the next one when the person
confirmed their app in the current step (a step already used is refused), computed just
before the pass, with at least 30 s of validity left. ``CONCURRENCY`` keep-alive clients
(as the gateway rows), connections opened before the clock starts; the figure is
verifications / wall time, every answer checked (200, accepted, stage full). Each
verification is the platform's whole work for it: the gateway's session look-up (a new
session: not cached, LookupSession), the CSRF and origin checks, VerifyTotp (one
transaction: the session, the sealed secret decrypted, the code matched, the step stored,
the audit entry, the session rotated) and the new cookie. **Baseline**:
``pyotp.TOTP(secret).verify(code, valid_window=1)`` (the platform's ±1 step window) on the
same secrets and codes, single-threaded in this process, repeated over them for at least
``BASELINE_SECONDS``; verifications / wall time.

**Passkey assertions/s**: passwordless sign-ins. (1) timed: one ``POST
/api/v1/signin/passkey/options`` per person (a challenge stored, the binding cookie set);
(2) untimed: each person's authenticator signs an assertion for one of those challenges
(the browser's and authenticator's work, not the platform's); (3) timed: the assertions
posted to ``POST /api/v1/signin/passkey`` with their binding cookies (challenge taken, the
credential found, py_webauthn's verification with our strict reading, the counter stored,
a full session opened and audited). The figure is sign-ins / (wall time of (1) + wall time
of (3)), both at ``CONCURRENCY``; the finishing POSTs alone are in the notes. **Baseline**:
``webauthn.verify_authentication_response`` on the same assertions (each with its
challenge, RP id, origin, COSE public key and the stored count), single-threaded, repeated
for at least ``BASELINE_SECONDS``.

Where the time goes (in the notes and raw): the gateway's upstream calls per operation (its
/metrics), identity's mean handler time per method (its ontrack_grpc_request_seconds), what
the tenant database's backends were doing (pg_stat_activity every 10 ms) and how many of
identity's pooled connections were in use (every 50 ms), the CPU each process used per
operation (the bench gateway's processes, identity's api, the deployment's PostgreSQL
backends, the rest of the stack, this client); the same steps made straight to identity's
MfaService over grpc.aio as the gateway makes them (its certificate, tenant and actor
metadata; other people, same concurrency; for TOTP also with the gateway's LookupSession and
TouchSession); identity's own checks in process (``totp.parse_code`` + ``matching_step``;
``passkeys.read_assertion`` once, then ``verify_authentication``) on the same
inputs, measured as the baselines are. With ``BENCH_MFA_PROFILE=1`` the identity steps are
also run in this process on an identity runtime of its own (``identity.api.bootstrap``),
single-threaded, half plainly (wall and CPU per step) and half under cProfile (the top
functions logged and kept in raw).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import cProfile
import io
import json
import os
import pstats
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyotp

from bench.common import ROOT, cpu_seconds, figure, log, percentile

GOAL = 0.6
CONCURRENCY = int(os.environ.get("BENCH_GATEWAY_CONCURRENCY", "32"))
USERS = int(os.environ.get("BENCH_MFA_USERS", "400"))
BASELINE_SECONDS = 1.0
PERIOD = 30
TOTP_NAME = "MFA TOTP verifications through the gateway"
PASSKEY_NAME = "MFA passkey assertions through the gateway"
SESSION_COOKIE = "__Host-ontrack_session"
BINDING_COOKIE = "__Host-ontrack_webauthn"

_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *([0-9]+)")


# -- people -----------------------------------------------------------------------------------


@dataclass
class Person:
    user_id: str
    email: str
    secret: str = ""
    confirmed_step: int = 0
    authenticator: Any = None
    # the session held at step_up (seeded after the policy change)
    session_id: str = ""
    cookie: str = ""
    csrf: str = ""


@dataclass
class Seeded:
    session_id: str
    cookie: str
    csrf: str


# -- raw keep-alive HTTP/1.1 over asyncio (one request after another per connection) ----------


async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes, bytes]:
    """One request on a keep-alive connection: (status, head, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    m = _CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return int(head[9:12]), head, body


async def _lanes(port: int, requests: list[bytes], concurrency: int):
    """``requests`` sent by ``concurrency`` keep-alive connections (request i on connection
    i mod concurrency, in order), connections opened before the clock starts. (wall seconds,
    answers in the order of ``requests``, each request's latency in seconds)."""
    lanes = [list(range(k, len(requests), concurrency)) for k in range(concurrency)]
    lanes = [lane for lane in lanes if lane]
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in lanes]
    answers: list[Any] = [None] * len(requests)
    latencies: list[float] = []

    async def run(conn, lane: list[int]) -> None:
        reader, writer = conn
        for i in lane:
            t0 = time.perf_counter()
            answers[i] = await _exchange(reader, writer, requests[i])
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(run(c, lane) for c, lane in zip(conns, lanes, strict=True)))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    return elapsed, answers, latencies


def _ms(latencies: list[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(latencies, p) * 1000, 2) for p in (50, 90, 99)}


def _post(path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _set_cookie(head: bytes, name: str) -> str | None:
    for line in head.decode("latin-1").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "set-cookie":
            cname, _, rest = value.strip().partition("=")
            if cname == name:
                return rest.split(";", 1)[0]
    return None


# -- CPU per process during a pass ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


class CpuMeter:
    """CPU seconds used by groups of processes between ``start`` and ``stop``."""

    def __init__(self, stack, gateway_pid: int, admin_dsn: str, deployment: str):
        self.stack, self.gateway_pid = stack, gateway_pid
        self.admin_dsn, self.pattern = admin_dsn, f"{deployment}\\_%"
        self._before: dict[str, dict[int, float]] = {}

    def _pg_pids(self) -> list[int]:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname LIKE %s OR usename LIKE %s",
                (self.pattern, self.pattern),
            ).fetchall()
        return [r[0] for r in rows]

    def _groups(self) -> dict[str, list[int]]:
        identity = self.stack.procs["identity-api"].pid
        rest = [
            q
            for name, p in self.stack.procs.items()
            if name != "identity-api"
            for q in _tree(p.pid)
        ]
        return {
            "gateway": _tree(self.gateway_pid),
            "identity-api": _tree(identity),
            "postgres": self._pg_pids(),
            "other stack": rest,
            "bench client": [os.getpid()],
        }

    def _read(self) -> dict[str, dict[int, float]]:
        return {g: {p: cpu_seconds(p) for p in pids} for g, pids in self._groups().items()}

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {
            g: sum(v - self._before.get(g, {}).get(p, 0.0) for p, v in pids.items())
            for g, pids in after.items()
        }


def _per_op(cpu: dict[str, float], ops: int) -> dict[str, float]:
    return {g: round(s / ops * 1000, 3) for g, s in cpu.items()}  # ms of CPU per operation


def _handlers_text(handlers: dict[str, dict[str, float]]) -> str:
    parts = ", ".join(
        f"{m} {h['mean_ms']:.1f}" for m, h in handlers.items() if m not in ("GetTenant", "Check")
    )
    return f"identity handler mean ms: {parts}"


def _backends_text(backends: dict[str, float]) -> str:
    states = [(k, v) for k, v in backends.items() if not k.startswith("identity pool")]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in states[:4] if v >= 0.05)
    pool = (
        f"; identity's pooled connections in use: mean "
        f"{backends['identity pool in use (mean)']:.1f}, max "
        f"{backends['identity pool in use (max)']:.0f}"
        if "identity pool in use (mean)" in backends
        else ""
    )
    return f"tenant-database backends on average: {parts}{pool}"


def _cpu_text(per_op: dict[str, float]) -> str:
    total = sum(per_op.values())
    parts = ", ".join(f"{g} {v:.1f}" for g, v in per_op.items() if v >= 0.05)
    return f"CPU ms per operation: {parts} (total {total:.1f})"


# -- identity's own time per method (its /metrics) and the tenant database's backends ---------


def _handler_seconds(port: int) -> dict[str, tuple[float, float]]:
    """method -> (count, seconds) of identity's gRPC handlers (ontrack_grpc_request_seconds:
    from the handler's start in its thread to its end, so not the executor's queue)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = re.match(r'ontrack_grpc_request_seconds_(count|sum){.*method="([^"]+)".*} (\S+)$', line)
        if m:
            pair = out.setdefault(m.group(2), [0.0, 0.0])
            pair[0 if m.group(1) == "count" else 1] += float(m.group(3))
    return {k: (v[0], v[1]) for k, v in out.items()}


def _handler_ms(before, after) -> dict[str, dict[str, float]]:
    """Per method called in between: calls and mean handler milliseconds."""
    out = {}
    for method, (count, secs) in sorted(after.items()):
        c0, s0 = before.get(method, (0.0, 0.0))
        if count - c0 > 0:
            out[method] = {
                "calls": int(count - c0),
                "mean_ms": round((secs - s0) / (count - c0) * 1000, 2),
            }
    return out


class BackendSampler:
    """Every 10 ms, what the tenant database's backends are doing (pg_stat_activity: state
    and wait event); every 50 ms, how many pooled connections identity's api has checked out
    (its ontrack_pool_connections_in_use, all its databases). ``stop`` gives the mean number
    of backends in each state, and the pool's mean and maximum in use."""

    def __init__(self, admin_dsn: str, dbname: str, metrics_port: int):
        import threading

        self.admin_dsn, self.dbname, self.metrics_port = admin_dsn, dbname, metrics_port
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.in_use: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            while not self._stop.wait(0.01):
                rows = conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.dbname,),
                ).fetchall()
                self.samples += 1
                if self.samples % 5 == 1:
                    self.in_use.append(_pool_in_use(self.metrics_port))
                for state, wtype, wevent in rows:
                    key = f"{state}" + (f" / {wtype}:{wevent}" if wtype else "")
                    self.counts[key] = self.counts.get(key, 0) + 1

    def start(self) -> BackendSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        n = max(1, self.samples)
        out = {k: round(v / n, 2) for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])}
        if self.in_use:
            out["identity pool in use (mean)"] = round(sum(self.in_use) / len(self.in_use), 2)
            out["identity pool in use (max)"] = max(self.in_use)
        return out


def _pool_in_use(port: int) -> float:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(r"^ontrack_pool_connections_in_use{[^}]*} (\S+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


# -- the gateway's upstream calls (its /metrics) ----------------------------------------------


def _upstream_calls(port: int) -> dict[str, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Host": "localhost"})
    text = conn.getresponse().read().decode()
    conn.close()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"ontrack_gateway_upstream_calls(?:_total)?{(.*)} ([0-9.e+]+)$", line)
        if m:
            method = re.search(r'method="([^"]+)"', m.group(1))
            if method:
                out[method.group(1)] = out.get(method.group(1), 0.0) + float(m.group(2))
    return out


def _calls_per_op(before: dict[str, float], after: dict[str, float], ops: int) -> dict[str, float]:
    return {
        k: round((v - before.get(k, 0.0)) / ops, 2)
        for k, v in sorted(after.items())
        if v - before.get(k, 0.0) > 0
    }


# -- the bench --------------------------------------------------------------------------------


class MfaBench:
    """One tenant with ``users`` people enrolled in both factors, on a gateway of the bench's
    own. People are used once per pass kind, so each pass takes its own slice."""

    def __init__(self, stack, settings, *, users: int = USERS, concurrency: int = CONCURRENCY):
        from bench.gateway import _Gateway

        self.stack, self.settings = stack, settings
        self.n, self.c = users, concurrency
        self.key = settings.token_hash_key.get_secret_value().encode()
        self.profile = os.environ.get("BENCH_MFA_PROFILE") == "1"
        self.identity_metrics = stack.ports["identity-api-metrics"]
        self.n_profile = 150 if self.profile else 0
        for k, v in stack.env().items():  # in-process clients use the same deployment
            if k.startswith("ONTRACK_"):
                os.environ.setdefault(k, v)
        self.gw = _Gateway(stack, workers=2)
        try:
            self._setup()
        except BaseException:
            self.gw.stop()
            raise

    def close(self) -> None:
        import shutil

        self.gw.stop()
        shutil.rmtree(self.gw.ready_dir, ignore_errors=True)  # its log (kept after a failure)

    # -- set-up -----------------------------------------------------------------------------

    def _setup(self) -> None:
        from ontrackio.identity.v1 import identity_pb2 as ipb
        from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
        from ontrackio.identity.v1 import sessions_pb2 as spb
        from ontrackio.identity.v1 import sessions_pb2_grpc as sgrpc

        t0 = time.monotonic()
        self.slug = f"bmfa{uuid.uuid4().hex[:8]}"
        self.host = f"{self.slug}.localhost:{self.gw.port}"
        self.origin = f"http://{self.host}"
        self.rp_id = f"{self.slug}.localhost"
        operator = self.stack.channel("identity", "operator")
        cli = self.stack.channel("identity", "cli")
        try:
            tenants = igrpc.TenantServiceStub(operator)
            tenants.CreateTenant(
                ipb.CreateTenantRequest(slug=self.slug, name=self.slug, tier=ipb.TIER_BUSINESS),
                timeout=30,
            )
            deadline = time.monotonic() + 120
            while (
                tenants.GetTenant(ipb.GetTenantRequest(slug=self.slug), timeout=5).status
                != ipb.TENANT_STATUS_ACTIVE
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tenant {self.slug} not active")
                time.sleep(0.1)
            md = (("x-ontrack-tenant", self.slug),)
            users = igrpc.UserServiceStub(operator)
            # warm-up people (TOTP, passkeys) + the gateway pass + two direct gRPC passes
            # (TOTP: without and with the session calls) + the in-process profile
            self.total = 2 * self.c + 3 * self.n + self.n_profile
            self.people: list[Person] = []
            for i in range(self.total):
                email = f"mfa{i:05d}@bench.example"
                u = users.CreateUser(
                    ipb.CreateUserRequest(email=email, display_name=f"Bench {i}"),
                    metadata=md,
                    timeout=10,
                )
                self.people.append(Person(u.id, email))
            log(f"mfa: tenant {self.slug}, {self.total} people ({time.monotonic() - t0:.1f} s)")
            full = self._seed([p.user_id for p in self.people], "full")
            self._enrol(full)
            log(f"mfa: everyone enrolled TOTP and a passkey ({time.monotonic() - t0:.1f} s)")
            sgrpc.SessionServiceStub(cli).SetSignInPolicy(
                spb.SignInPolicy(mfa_policy="everyone"),
                metadata=(*md, ("x-ontrack-actor", "cli:bench")),
                timeout=10,
            )
            held = self._seed([p.user_id for p in self.people], "step_up")
            for p, s in zip(self.people, held, strict=True):
                p.session_id, p.cookie, p.csrf = s.session_id, s.cookie, s.csrf
        finally:
            operator.close()
            cli.close()
        k = 2 * self.c
        self.warm = self.people[:k]
        self.via_gateway = self.people[k : k + self.n]
        self.direct = self.people[k + self.n : k + 2 * self.n]
        self.direct_sessions = self.people[k + 2 * self.n : k + 3 * self.n]
        self.profiled = self.people[k + 3 * self.n :]
        log(f"mfa: set up in {time.monotonic() - t0:.1f} s")

    def _seed(self, user_ids: list[str], stage: str) -> list[Seeded]:
        """A session per user, seeded at ``stage`` as tests/e2e/sessions_kit.py does."""
        from ontrackio.core.db.clusters import Clusters
        from ontrackio.identity.sessions import rules

        now = datetime.now(UTC)
        rows, out = [], []
        for user_id in user_ids:
            issued = rules.issue(self.key)
            rows.append(
                (
                    issued.token_id,
                    issued.secret_hash,
                    user_id,
                    now + timedelta(hours=1),
                    now + timedelta(hours=8),
                    stage,
                )
            )
            out.append(
                Seeded(issued.token_id, issued.bearer, rules.csrf_token(self.key, issued.token_id))
            )
        conninfo = Clusters(self.settings).tenant_conninfo("identity", self.slug, "main")
        with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sessions (id, secret_hash, user_id, method, idle_expires_at,"
                " expires_at, stage) VALUES (%s, %s, %s, 'password', %s, %s, %s)",
                rows,
            )
        return out

    def _enrol(self, sessions: list[Seeded]) -> None:
        """Each person, with a full session: an authenticator app, then a passkey, through
        the gateway (8 threads, one keep-alive connection each)."""
        from bench.saml import Http

        sys.path.insert(0, str(ROOT))
        from tests.soft_webauthn import SoftAuthenticator

        def one(http: Http, p: Person, s: Seeded) -> None:
            headers = {
                "Cookie": f"{SESSION_COOKIE}={s.cookie}",
                "Origin": self.origin,
                "X_CSRF_Token": s.csrf,
            }

            def send(path: str, value=None) -> dict:
                body = json.dumps(value).encode() if value is not None else b""
                extra = {"Content_Type": "application/json"} if value is not None else {}
                status, _, data = http.request("POST", path, body, **headers, **extra)
                if status != 200:
                    raise RuntimeError(f"POST {path}: {status} {data[:300]!r}")
                return json.loads(data)

            p.secret = send("/api/v1/mfa/totp")["secret"]
            now = time.time()
            p.confirmed_step = int(now) // PERIOD
            done = send("/api/v1/mfa/totp/confirm", {"code": pyotp.TOTP(p.secret).at(now)})
            if not done["accepted"]:
                raise RuntimeError("a bench TOTP confirmation was refused")
            opts = send("/api/v1/mfa/passkeys/options")
            p.authenticator = SoftAuthenticator()
            credential = p.authenticator.register(json.dumps(opts["options"]), origin=self.origin)
            send(
                "/api/v1/mfa/passkeys",
                {
                    "challenge_id": opts["challenge_id"],
                    "credential": json.loads(credential),
                    "name": "Bench",
                },
            )

        work = list(zip(self.people, sessions, strict=True))
        threads = 8

        def lane(k: int) -> None:
            http = Http(self.gw.port, self.host)
            try:
                for p, s in work[k::threads]:
                    one(http, p, s)
            finally:
                http.close()

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for f in [pool.submit(lane, k) for k in range(threads)]:
                f.result()

    def _sampler(self) -> BackendSampler:
        from ontrackio.core.tenancy import Names

        dbname = Names(self.stack.deployment, "identity").tenant_database(self.slug)
        return BackendSampler(self.stack.pg_dsn, dbname, self.identity_metrics).start()

    def _meter(self) -> CpuMeter:
        return CpuMeter(self.stack, self.gw.proc.pid, self.stack.pg_dsn, self.stack.deployment)

    # -- TOTP -------------------------------------------------------------------------------

    @staticmethod
    def _codes(people: list[Person]) -> tuple[list[str], float]:
        """A valid, unused code per person (its step after the confirmed one, and within
        ±1 of now) and how long all of them stay valid (seconds)."""
        now = time.time()
        current = int(now) // PERIOD
        codes, valid_until = [], float("inf")
        for p in people:
            step = max(p.confirmed_step + 1, current)
            codes.append(pyotp.TOTP(p.secret).at(step * PERIOD))
            valid_until = min(valid_until, (step + 2) * PERIOD)
        return codes, valid_until - now

    def _verify_requests(self, people: list[Person], codes: list[str]) -> list[bytes]:
        return [
            _post(
                "/api/v1/mfa/verify",
                self.host,
                {
                    "Cookie": f"{SESSION_COOKIE}={p.cookie}",
                    "Origin": self.origin,
                    "X-CSRF-Token": p.csrf,
                    "Content-Type": "application/json",
                },
                json.dumps({"code": code}).encode(),
            )
            for p, code in zip(people, codes, strict=True)
        ]

    @staticmethod
    def _check_steps(answers, what: str) -> None:
        bad = [
            (s, b[:200])
            for s, _, b in answers
            if s != 200 or not json.loads(b).get("accepted") or json.loads(b)["stage"] != "full"
        ]
        if bad:
            raise RuntimeError(f"{what}: {len(bad)} of {len(answers)} refused, e.g. {bad[:2]}")

    def _totp_gateway(self, people: list[Person]) -> dict:
        codes, left = self._codes(people)
        requests = self._verify_requests(people, codes)
        meter = self._meter()
        calls_before = _upstream_calls(self.gw.port)
        handlers_before = _handler_seconds(self.identity_metrics)
        sampler = self._sampler()
        meter.start()
        elapsed, answers, latencies = asyncio.run(_lanes(self.gw.port, requests, self.c))
        cpu = meter.stop()
        backends = sampler.stop()
        handlers = _handler_ms(handlers_before, _handler_seconds(self.identity_metrics))
        calls = _calls_per_op(calls_before, _upstream_calls(self.gw.port), len(people))
        self._check_steps(answers, "TOTP verifications through the gateway")
        return {
            "rate": len(people) / elapsed,
            "seconds": elapsed,
            "latency": _ms(latencies),
            "codes_valid_s": left,
            "cpu_ms_per_op": _per_op(cpu, len(people)),
            "upstream_calls_per_op": calls,
            "identity_handlers": handlers,
            "tenant_db_backends": backends,
            "codes": codes,
        }

    def _totp_direct(self, people: list[Person], *, session_calls: bool) -> dict:
        """VerifyTotp straight to identity, as the gateway calls it (its certificate, the
        tenant, the user as actor). ``session_calls``: also the session calls the gateway
        makes for a session it has not cached, LookupSession first, then TouchSession (sent
        in the background by the gateway) alongside VerifyTotp."""
        import grpc

        from ontrackio.identity.sessions import rules
        from ontrackio.identity.v1 import mfa_pb2 as mpb
        from ontrackio.identity.v1 import mfa_pb2_grpc as mgrpc
        from ontrackio.identity.v1 import sessions_pb2 as spb
        from ontrackio.identity.v1 import sessions_pb2_grpc as sgrpc

        codes, _ = self._codes(people)
        meter = self._meter()
        tenant_md = (("x-ontrack-tenant", self.slug),)
        touch_after_rotation: list[int] = []

        async def run() -> tuple[float, list, list]:
            async with self.stack.aio_channel("identity", "gateway") as channel:
                stub = mgrpc.MfaServiceStub(channel)
                sessions = sgrpc.SessionServiceStub(channel)
                await channel.channel_ready()
                todo = list(zip(people, codes, strict=True))
                out: list = []
                latencies: list[float] = []

                async def one(p: Person, code: str):
                    md = (
                        *tenant_md,
                        ("x-ontrack-actor", rules.user_actor(p.user_id)),
                        ("x-ontrack-client-address", "127.0.0.1"),
                    )
                    return await stub.VerifyTotp(
                        mpb.MfaCodeRequest(session_id=p.session_id, code=code),
                        metadata=md,
                        timeout=30,
                    )

                async def touch(p: Person) -> None:
                    try:
                        await sessions.TouchSession(
                            spb.TouchSessionRequest(id=p.session_id, address="127.0.0.1"),
                            metadata=tenant_md,
                            timeout=30,
                        )
                    except grpc.aio.AioRpcError as exc:
                        # ended meanwhile by the rotation (the gateway forgets it then)
                        if exc.code() is not grpc.StatusCode.NOT_FOUND:
                            raise
                        touch_after_rotation.append(1)

                async def lane() -> None:
                    while todo:
                        p, code = todo.pop()
                        t0 = time.perf_counter()
                        if session_calls:
                            await sessions.LookupSession(
                                spb.LookupSessionRequest(id=p.session_id),
                                metadata=tenant_md,
                                timeout=30,
                            )
                            r, _ = await asyncio.gather(one(p, code), touch(p))
                        else:
                            r = await one(p, code)
                        latencies.append(time.perf_counter() - t0)
                        out.append(r)

                start = time.perf_counter()
                await asyncio.gather(*(lane() for _ in range(self.c)))
                return time.perf_counter() - start, out, latencies

        handlers_before = _handler_seconds(self.identity_metrics)
        meter.start()
        elapsed, results, latencies = asyncio.run(run())
        cpu = meter.stop()
        handlers = _handler_ms(handlers_before, _handler_seconds(self.identity_metrics))
        refused = sum(1 for r in results if not r.accepted)
        if refused:
            raise RuntimeError(f"direct VerifyTotp refused {refused} of {len(results)}")
        return {
            "rate": len(people) / elapsed,
            "seconds": elapsed,
            "latency": _ms(latencies),
            "cpu_ms_per_op": _per_op(cpu, len(people)),
            "touch_not_found": len(touch_after_rotation),
            "identity_handlers": handlers,
        }

    @staticmethod
    def _matching_step(work: list[tuple[Person, str]]) -> dict:
        """identity's own TOTP check (totp.parse_code + matching_step, the replay rule
        included; no I/O) on the same codes, measured as the baseline is."""
        from ontrackio.identity.mfa import totp

        done, start = 0, time.perf_counter()
        while True:
            for p, code in work:
                step = totp.matching_step(
                    p.secret, totp.parse_code(code), time.time(), last_step=p.confirmed_step
                )
                if step is None:
                    raise RuntimeError("identity's matching_step refused a bench code")
            done += len(work)
            elapsed = time.perf_counter() - start
            if elapsed >= BASELINE_SECONDS:
                return {"rate": done / elapsed, "verifications": done, "seconds": elapsed}

    @staticmethod
    def _pyotp(pairs: list[tuple[str, str]]) -> dict:
        done, start = 0, time.perf_counter()
        while True:
            for secret, code in pairs:
                if not pyotp.TOTP(secret).verify(code, valid_window=1):
                    raise RuntimeError("pyotp refused a bench code")
            done += len(pairs)
            elapsed = time.perf_counter() - start
            if elapsed >= BASELINE_SECONDS:
                return {"rate": done / elapsed, "verifications": done, "seconds": elapsed}

    def totp(self) -> tuple[list[dict], dict]:
        # Warm-up: both workers' paths and upstream channels, untimed.
        warm = self.warm[: self.c]
        codes, _ = self._codes(warm)
        _, answers, _ = asyncio.run(_lanes(self.gw.port, self._verify_requests(warm, codes), 4))
        self._check_steps(answers, "warm-up TOTP verifications")
        ours = self._totp_gateway(self.via_gateway)
        codes = ours.pop("codes")
        base = self._pyotp([(p.secret, c) for p, c in zip(self.via_gateway, codes, strict=True)])
        checks = self._matching_step(list(zip(self.via_gateway, codes, strict=True)))
        direct = self._totp_direct(self.direct, session_calls=False)
        with_sessions = self._totp_direct(self.direct_sessions, session_calls=True)
        raw = {
            "gateway": ours,
            "direct_grpc": direct,
            "direct_grpc_with_session_calls": with_sessions,
            "pyotp": base,
            "identity_checks_in_process": checks,
            "people": self.n,
        }
        if self.profile:
            raw["profile"] = self._profile_totp(self.profiled)
        fig = figure(
            "MFA TOTP verifications/s through the gateway (POST /api/v1/mfa/verify)",
            ours["rate"],
            base["rate"],
            "verifications/s",
            f">= {GOAL}x pyotp",
            ours["rate"] / base["rate"] >= GOAL,
            f"{self.n} sessions held at step_up, one valid code each, {self.c} keep-alive "
            f"clients, {ours['seconds']:.2f} s; timed: the POSTs only (people, sessions, "
            f"factors, codes and connections made before). Per verification: upstream calls "
            f"{ours['upstream_calls_per_op']}; latency {ours['latency']}; "
            f"{_handlers_text(ours['identity_handlers'])}. Baseline: "
            f"pyotp.TOTP(secret).verify(code, valid_window=1) on the same secrets and codes, "
            f"single-threaded ({base['verifications']} in {base['seconds']:.2f} s); identity's "
            f"own check in process (parse_code + matching_step, no I/O): {checks['rate']:,.0f}/s "
            f"({checks['rate'] / base['rate']:.2f}x). Straight to identity over gRPC, same "
            f"concurrency, {self.n} other people each: VerifyTotp {direct['rate']:.0f}/s, with "
            f"the gateway's LookupSession + TouchSession {with_sessions['rate']:.0f}/s. "
            + _cpu_text(ours["cpu_ms_per_op"])
            + f" (VerifyTotp alone: {sum(direct['cpu_ms_per_op'].values()):.1f}, identity "
            f"{direct['cpu_ms_per_op']['identity-api']:.1f}); "
            + _backends_text(ours["tenant_db_backends"]),
        )
        return [fig], raw

    # -- passkeys ---------------------------------------------------------------------------

    def _options_requests(self, count: int) -> list[bytes]:
        return [
            _post("/api/v1/signin/passkey/options", self.host, {"Origin": self.origin})
            for _ in range(count)
        ]

    def _sign(self, people: list[Person], options_answers) -> tuple[list[bytes], list[dict]]:
        """Each person's assertion for one of the challenges (untimed), as the POSTs that
        finish the sign-ins, and what the baseline verifies."""
        requests, inputs = [], []
        for p, (status, head, body) in zip(people, options_answers, strict=True):
            if status != 200:
                raise RuntimeError(f"passkey options: {status} {body[:200]!r}")
            binding = _set_cookie(head, BINDING_COOKIE)
            opts = json.loads(body)
            stored = p.authenticator.sign_count
            assertion = p.authenticator.authenticate(
                json.dumps(opts["options"]), origin=self.origin
            )
            requests.append(
                _post(
                    "/api/v1/signin/passkey",
                    self.host,
                    {
                        "Cookie": f"{BINDING_COOKIE}={binding}",
                        "Origin": self.origin,
                        "Content-Type": "application/json",
                    },
                    json.dumps(
                        {"challenge_id": opts["challenge_id"], "credential": json.loads(assertion)}
                    ).encode(),
                )
            )
            inputs.append(
                {
                    "credential": assertion,
                    "challenge": _unb64url(opts["options"]["challenge"]),
                    "public_key": p.authenticator.cose_public_key(),
                    "sign_count": stored,
                }
            )
        return requests, inputs

    def _passkeys_gateway(self, people: list[Person], concurrency: int) -> dict:
        meter = self._meter()
        calls_before = _upstream_calls(self.gw.port)
        handlers_before = _handler_seconds(self.identity_metrics)
        sampler = self._sampler()
        meter.start()
        t_options, options, lat_options = asyncio.run(
            _lanes(self.gw.port, self._options_requests(len(people)), concurrency)
        )
        cpu_options = meter.stop()
        backends_options = sampler.stop()
        calls_mid = _upstream_calls(self.gw.port)
        made = time.perf_counter()
        requests, inputs = self._sign(people, options)
        t_sign = time.perf_counter() - made
        sampler = self._sampler()
        meter.start()
        t_finish, answers, lat_finish = asyncio.run(_lanes(self.gw.port, requests, concurrency))
        cpu_finish = meter.stop()
        backends_finish = sampler.stop()
        handlers = _handler_ms(handlers_before, _handler_seconds(self.identity_metrics))
        calls_after = _upstream_calls(self.gw.port)
        bad = [
            (s, b[:200]) for s, h, b in answers if s != 200 or not _set_cookie(h, SESSION_COOKIE)
        ]
        if bad:
            raise RuntimeError(f"passkey sign-ins: {len(bad)} of {len(answers)} refused: {bad[:2]}")
        n = len(people)
        return {
            "rate": n / (t_options + t_finish),
            "finish_rate": n / t_finish,
            "options_rate": n / t_options,
            "options_s": t_options,
            "finish_s": t_finish,
            "signing_s_untimed": t_sign,
            "latency_options": _ms(lat_options),
            "latency_finish": _ms(lat_finish),
            "cpu_ms_per_op": _per_op({g: cpu_options[g] + cpu_finish[g] for g in cpu_finish}, n),
            "cpu_ms_per_finish": _per_op(cpu_finish, n),
            "upstream_calls_per_options": _calls_per_op(calls_before, calls_mid, n),
            "upstream_calls_per_finish": _calls_per_op(calls_mid, calls_after, n),
            "identity_handlers": handlers,
            "tenant_db_backends_options": backends_options,
            "tenant_db_backends_finish": backends_finish,
            "inputs": inputs,
        }

    def _passkeys_direct(self, people: list[Person]) -> dict:
        """BeginPasskeySignIn then FinishPasskeySignIn straight to identity, as the gateway
        calls them (the signing in between untimed)."""
        from ontrackio.identity.v1 import mfa_pb2 as mpb
        from ontrackio.identity.v1 import mfa_pb2_grpc as mgrpc

        md = (("x-ontrack-tenant", self.slug), ("x-ontrack-client-address", "127.0.0.1"))
        bindings = [secrets.token_bytes(32) for _ in people]
        meter = self._meter()

        async def pass_(calls) -> tuple[float, list]:
            async with self.stack.aio_channel("identity", "gateway") as channel:
                stub = mgrpc.MfaServiceStub(channel)
                await channel.channel_ready()
                todo = list(enumerate(calls))
                out: list = [None] * len(calls)

                async def lane() -> None:
                    while todo:
                        i, (method, request) = todo.pop()
                        out[i] = await getattr(stub, method)(request, metadata=md, timeout=30)

                start = time.perf_counter()
                await asyncio.gather(*(lane() for _ in range(self.c)))
                return time.perf_counter() - start, out

        begin = [
            (
                "BeginPasskeySignIn",
                mpb.PasskeySignInBegin(origin=self.origin, binding=b, client_address="127.0.0.1"),
            )
            for b in bindings
        ]
        handlers_before = _handler_seconds(self.identity_metrics)
        meter.start()
        t_options, options = asyncio.run(pass_(begin))
        cpu_options = meter.stop()
        finish = []
        for p, b, o in zip(people, bindings, options, strict=True):
            assertion = p.authenticator.authenticate(o.options_json, origin=self.origin)
            finish.append(
                (
                    "FinishPasskeySignIn",
                    mpb.PasskeySignIn(
                        origin=self.origin,
                        binding=b,
                        challenge_id=o.challenge_id,
                        response_json=assertion,
                        client_address="127.0.0.1",
                        user_agent="bench",
                        next="/",
                    ),
                )
            )
        meter.start()
        t_finish, grants = asyncio.run(pass_(finish))
        cpu_finish = meter.stop()
        handlers = _handler_ms(handlers_before, _handler_seconds(self.identity_metrics))
        if not all(g.session_id for g in grants):
            raise RuntimeError("a direct FinishPasskeySignIn opened no session")
        n = len(people)
        return {
            "rate": n / (t_options + t_finish),
            "finish_rate": n / t_finish,
            "options_rate": n / t_options,
            "cpu_ms_per_op": _per_op({g: cpu_options[g] + cpu_finish[g] for g in cpu_finish}, n),
            "identity_handlers": handlers,
        }

    def _passkey_checks(self, inputs: list[dict]) -> dict:
        """identity's own checks of an assertion as the sign-in makes them (passkeys:
        read_assertion once, then verify_authentication; no I/O) on the same
        assertions, measured as the baseline is."""
        from ontrackio.identity.mfa import passkeys

        done, start = 0, time.perf_counter()
        while True:
            for x in inputs:
                answer = passkeys.read_assertion(x["credential"])
                passkeys.verify_authentication(
                    answer,
                    challenge=x["challenge"],
                    rp_id=self.rp_id,
                    origin=self.origin,
                    public_key=x["public_key"],
                    stored_sign_count=x["sign_count"],
                    require_user_verification=True,
                )
                _ = answer.credential_id, answer.user_handle
            done += len(inputs)
            elapsed = time.perf_counter() - start
            if elapsed >= BASELINE_SECONDS:
                return {"rate": done / elapsed, "verifications": done, "seconds": elapsed}

    def _py_webauthn(self, inputs: list[dict]) -> dict:
        import webauthn

        done, start = 0, time.perf_counter()
        while True:
            for x in inputs:
                webauthn.verify_authentication_response(
                    credential=x["credential"],
                    expected_challenge=x["challenge"],
                    expected_rp_id=self.rp_id,
                    expected_origin=self.origin,
                    credential_public_key=x["public_key"],
                    credential_current_sign_count=x["sign_count"],
                    require_user_verification=True,
                )
            done += len(inputs)
            elapsed = time.perf_counter() - start
            if elapsed >= BASELINE_SECONDS:
                return {"rate": done / elapsed, "verifications": done, "seconds": elapsed}

    def passkeys(self) -> tuple[list[dict], dict]:
        warm = self.warm[self.c :]
        self._passkeys_gateway(warm, 4)  # untimed warm-up
        ours = self._passkeys_gateway(self.via_gateway, self.c)
        inputs = ours.pop("inputs")
        base = self._py_webauthn(inputs)
        checks = self._passkey_checks(inputs)
        direct = self._passkeys_direct(self.direct)
        raw = {
            "gateway": ours,
            "direct_grpc": direct,
            "py_webauthn": base,
            "identity_checks_in_process": checks,
            "people": self.n,
        }
        if self.profile:
            raw["profile"] = self._profile_passkeys(self.profiled)
        fig = figure(
            "MFA passkey assertions/s through the gateway (passwordless sign-ins)",
            ours["rate"],
            base["rate"],
            "sign-ins/s",
            f">= {GOAL}x py_webauthn verify",
            ours["rate"] / base["rate"] >= GOAL,
            f"{self.n} passwordless sign-ins, one per person (ES256 soft authenticator, "
            f"counting), {self.c} keep-alive clients; timed: POST /api/v1/signin/passkey/options "
            f"x{self.n} ({ours['options_s']:.2f} s) + POST /api/v1/signin/passkey x{self.n} "
            f"({ours['finish_s']:.2f} s; {ours['finish_rate']:.0f}/s alone); not timed: the "
            f"signatures ({ours['signing_s_untimed']:.2f} s, between the two), the registrations. "
            f"Latency options {ours['latency_options']}, finish {ours['latency_finish']}; "
            f"{_handlers_text(ours['identity_handlers'])}. Baseline: "
            f"webauthn.verify_authentication_response on the same assertions, single-threaded "
            f"({base['verifications']} in {base['seconds']:.2f} s; no options, no storage); "
            f"identity's own checks in process (read_assertion once + verify_authentication, "
            f"no I/O): {checks['rate']:,.0f}/s ({checks['rate'] / base['rate']:.2f}"
            f"x). Straight to identity over gRPC (Begin/FinishPasskeySignIn), same concurrency, "
            f"{self.n} other people: {direct['rate']:.0f}/s (finish alone "
            f"{direct['finish_rate']:.0f}/s). "
            + _cpu_text(ours["cpu_ms_per_op"])
            + "; finish pass "
            + _backends_text(ours["tenant_db_backends_finish"]),
        )
        return [fig], raw

    # -- in-process profile (BENCH_MFA_PROFILE=1) -------------------------------------------

    def _runtime(self):
        if getattr(self, "_rt", None) is None:
            from ontrackio.catalogue import DEPLOYMENT
            from ontrackio.identity.api import bootstrap

            self._rt = bootstrap("identity", self.settings, DEPLOYMENT)
        return self._rt

    def _profile(self, label: str, fn, items: list) -> dict:
        """The first half of ``items`` timed plainly (wall and this process's CPU, its relay
        thread included), the second half under cProfile (wall time per function)."""
        half = len(items) // 2
        start, cpu = time.perf_counter(), time.process_time()
        for item in items[:half]:
            fn(item)
        plain_s, plain_cpu = time.perf_counter() - start, time.process_time() - cpu
        items = items[half:]
        prof = cProfile.Profile()
        start = time.perf_counter()
        prof.enable()
        for item in items:
            fn(item)
        prof.disable()
        elapsed = time.perf_counter() - start
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
        stats.print_stats(35)
        text = out.getvalue()
        log(f"mfa profile ({label}, {len(items)} in {elapsed:.2f} s, single-threaded):\n{text}")
        tt = io.StringIO()
        pstats.Stats(prof, stream=tt).sort_stats("tottime").print_stats(25)
        log(f"mfa profile ({label}) by own time:\n{tt.getvalue()}")
        log(
            f"mfa in process ({label}), unprofiled: {half / plain_s:.0f}/s, "
            f"{plain_s / half * 1000:.1f} ms wall and {plain_cpu / half * 1000:.2f} ms CPU each"
        )
        return {
            "rate": half / plain_s,
            "wall_ms": plain_s / half * 1000,
            "cpu_ms": plain_cpu / half * 1000,
            "profiled_rate": len(items) / elapsed,
            "cumulative": text[-20000:],
            "tottime": tt.getvalue()[-12000:],
        }

    def _profile_totp(self, people: list[Person]) -> dict:
        from ontrackio.identity.mfa.flow import MfaFlow

        rt = self._runtime()
        flow = MfaFlow(rt)
        info = rt.directory.require_active(self.slug)
        codes, _ = self._codes(people)
        work = list(zip(people, codes, strict=True))
        flow.verify_totp(info, work[0][0].session_id, work[0][0].user_id, work[0][1])  # warm
        return self._profile(
            "identity MfaFlow.verify_totp in process",
            lambda pc: _accepted(flow.verify_totp(info, pc[0].session_id, pc[0].user_id, pc[1])),
            work[1:],
        )

    def _profile_passkeys(self, people: list[Person]) -> dict:
        from ontrackio.identity.mfa.flow import MfaFlow

        rt = self._runtime()
        flow = MfaFlow(rt)
        info = rt.directory.require_active(self.slug)

        def one(p: Person) -> None:
            binding = secrets.token_bytes(32)
            options, challenge_id = flow.begin_passkey_sign_in(
                info, self.origin, binding, "127.0.0.1"
            )
            assertion = p.authenticator.authenticate(options, origin=self.origin)
            flow.finish_passkey_sign_in(
                info,
                origin_url=self.origin,
                binding=binding,
                challenge_id=challenge_id,
                response_json=assertion,
                client_address="127.0.0.1",
            )

        one(people[0])
        return self._profile(
            "identity MfaFlow passwordless sign-in in process (signing included)", one, people[1:]
        )


def _accepted(r) -> None:
    if not r.accepted:
        raise RuntimeError("an in-process verification was refused")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
