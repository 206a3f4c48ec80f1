"""SAML ACS sign-ins per second: identity's checks against python3-saml's own
``process_response`` on the same responses, in the same run.

The responses are real: ``devtools.samlidp`` (pysaml2 building them, xmlsec1 signing with
RSA-SHA256), one per AuthnRequest id, made before anything is timed.

- **baseline**: python3-saml as an application uses it, ``OneLogin_Saml2_Auth(request,
  settings).process_response(request_id=…)``, settings parsed once (as an app keeps them).
- **ours, in process** (``consume`` not given): ``acs.verify`` — our hostile-XML parse,
  python3-saml's strict validation, our checks on the signed assertion and the mapping to an
  ExternalIdentity (no database).
- **ours, end to end** (``consume`` given): ``consume(saml_response, request_id)`` is called
  once per response (each is used once: the replay cache would refuse a second use), e.g. a
  POST to the gateway's ``/auth/saml/acs`` for responses answering requests the gateway
  issued (``responses_for`` signs them for given request ids).

Paired: passes of ``batch`` responses alternate between the kinds (the leading kind
rotating) for ``seconds`` in all; the figure is each kind's median pass rate.
``python -m bench.saml [--seconds S]`` runs the in-process figures.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable, Sequence

from bench.common import figure, log, median
from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, ENTRA_MFA, SamlIdP
from ontrackio.identity.sso.saml import acs, rules

ORIGIN = "https://bench.ontrack.test"
DOMAIN = "bench.example"
GOAL = 0.6


def user_email(i: int, domain: str = DOMAIN) -> str:
    return f"user{i}@{domain}"


def config_for(idp: SamlIdP) -> rules.IdpConfig:
    return rules.validate_config(
        idp_entity_id=idp.entity_id,
        sso_url=idp.sso_url,
        certificates=[k.cert_pem for k in idp.keys],
        email_attribute=EMAIL_ATTRIBUTE,
    )


def responses_for(
    idp: SamlIdP,
    sp: rules.SpEndpoints,
    request_ids: Sequence[str],
    *,
    domain: str = DOMAIN,
    users: int | None = None,
) -> list[tuple[str, str]]:
    """(SAMLResponse form value, request id) for each id, signed by ``idp``, for
    ``user<i>@domain`` (``i`` cycling over ``users`` people when given, else one each)."""
    out = []
    for i, rid in enumerate(request_ids):
        email = user_email(i % users if users else i, domain)
        value = idp.encoded(
            sp_entity_id=sp.entity_id,
            acs_url=sp.acs_url,
            in_response_to=rid,
            name_id=email,
            attributes={EMAIL_ATTRIBUTE: [email]},
            authn_class=ENTRA_MFA,
        )
        out.append((value, rid))
    return out


def _python3_saml(config: rules.IdpConfig, sp: rules.SpEndpoints) -> Callable[[str, str], None]:
    from onelogin.saml2.auth import OneLogin_Saml2_Auth

    settings = acs.onelogin_settings(config, sp, None)
    base = sp.request_data()

    def process(value: str, rid: str) -> None:
        auth = OneLogin_Saml2_Auth(dict(base, post_data={"SAMLResponse": value}), settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            auth.process_response(request_id=rid)
        if auth.get_errors() or not auth.is_authenticated():
            raise RuntimeError(f"python3-saml refused a bench response: {auth.get_errors()}")

    return process


def _ours(config: rules.IdpConfig, sp: rules.SpEndpoints) -> Callable[[str, str], None]:
    def verify(value: str, rid: str) -> None:
        if acs.verify(value, config, sp).in_response_to != rid:
            raise RuntimeError("a bench response answered another request")

    return verify


def run(
    seconds: float = 10.0,
    *,
    responses: int = 100,
    batch: int = 10,
    consume: Callable[[str, str], object] | None = None,
    request_ids: Sequence[str] | None = None,
    idp: SamlIdP | None = None,
    origin: str = ORIGIN,
    domain: str = DOMAIN,
    users: int | None = None,
    label: str | None = None,
) -> tuple[list[dict], dict]:
    """(figures, raw numbers). With ``consume``, ``request_ids`` (issued by the system under
    test, e.g. from ``/auth/saml/login`` redirects) name the responses to make, and ``idp``
    is the IdP the tenant trusts; each response is consumed once, so the run ends when they
    are used up or ``seconds`` have passed."""
    own = idp is None
    idp = idp or SamlIdP("https://idp.bench.test/metadata")
    try:
        sp = rules.SpEndpoints.from_origin(origin)
        config = config_for(idp)
        ids = list(request_ids or [f"ONELOGIN_bench{i:06d}" for i in range(responses)])
        made = time.perf_counter()
        pool = responses_for(idp, sp, ids, domain=domain, users=users)
        log(f"saml: {len(pool)} signed responses in {time.perf_counter() - made:.1f} s")
        kinds: dict[str, Callable[[str, str], object]] = {
            "python3-saml": _python3_saml(config, sp),
            "ours": consume or _ours(config, sp),
        }
        fresh = list(pool) if consume is not None else None  # end to end: each used once
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline and (fresh is None or len(fresh) >= batch):
            order = list(kinds)[i % 2 :] + list(kinds)[: i % 2]
            for kind in order:
                if kind == "ours" and fresh is not None:
                    chunk, fresh = fresh[:batch], fresh[batch:]
                else:
                    chunk = [pool[(i * batch + j) % len(pool)] for j in range(batch)]
                start = time.perf_counter()
                for value, rid in chunk:
                    kinds[kind](value, rid)
                rates[kind].append(len(chunk) / (time.perf_counter() - start))
            i += 1
        ours, base = median(rates["ours"]), median(rates["python3-saml"])
        where = label or ("end to end" if consume is not None else "identity's checks, in process")
        fig = figure(
            f"SAML ACS sign-ins ({where})",
            ours,
            base,
            "sign-ins/s",
            f">= {GOAL}x python3-saml process_response",
            ours / base >= GOAL if base else False,
            f"{len(rates['ours'])} paired passes of {batch}; RSA-SHA256 assertions by pysaml2",
        )
        return [fig], {"rates": rates, "passes": i}
    finally:
        if own:
            idp.close()


# -- through the gateway ------------------------------------------------------------------------

SESSION_COOKIE = "__Host-ontrack_session"
BINDING_COOKIE = "__Host-ontrack_saml"


def _cookie(headers, name: str) -> str | None:
    """The value a response's Set-Cookie headers give ``name``, if any."""
    for header in headers.get_all("set-cookie") or []:
        key, _, rest = header.partition("=")
        if key == name:
            return rest.split(";", 1)[0]
    return None


class Http:
    """One keep-alive HTTP/1.1 connection to a gateway, for one tenant host."""

    def __init__(self, port: int, host: str, bindings: dict[str, str] | None = None):
        import http.client

        self.host = host
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        # request id -> the binding cookie /auth/saml/login set with it (the browser that
        # began a sign-in is the one that posts its response); shareable between clients
        self.bindings = bindings if bindings is not None else {}

    def request(self, method: str, path: str, body: bytes = b"", **headers: str):
        """(status, headers as a message, body)."""
        import http.client

        hdrs = {"Host": self.host, **{k.replace("_", "-"): v for k, v in headers.items()}}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body or None, headers=hdrs)
                r = self.conn.getresponse()
                return r.status, r.headers, r.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # The server closed the idle keep-alive connection (its timeout is 5 s; making
                # the responses takes longer) before reading this request: send it again.
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, token: str, value=None) -> dict:
        body = json.dumps(value).encode() if value is not None else b""
        extra = {"Content_Type": "application/json"} if value is not None else {}
        status, _, data = self.request(method, path, body, Authorization=f"Bearer {token}", **extra)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)

    def login(self) -> str:
        """A new AuthnRequest's id (what ``/auth/saml/login`` puts in RelayState)."""
        from urllib.parse import parse_qs, urlsplit

        status, headers, data = self.request("GET", "/auth/saml/login?next=/assets")
        if status != 302:
            raise RuntimeError(f"/auth/saml/login: {status} {data[:300]!r}")
        rid = parse_qs(urlsplit(headers["location"]).query)["RelayState"][0]
        self.bindings[rid] = _cookie(headers, BINDING_COOKIE) or ""
        return rid

    def acs(self, value: str, request_id: str) -> str | None:
        """POST the IdP's form; the session cookie on a 303, None otherwise."""
        from urllib.parse import urlencode

        form = urlencode({"SAMLResponse": value, "RelayState": request_id}).encode()
        status, headers, _ = self.request(
            "POST",
            "/auth/saml/acs",
            form,
            Content_Type="application/x-www-form-urlencoded",
            Origin="https://idp.bench.test",
            Cookie=f"{BINDING_COOKIE}={self.bindings.get(request_id, '')}",
        )
        if status != 303:
            return None
        return _cookie(headers, SESSION_COOKIE)

    def close(self) -> None:
        self.conn.close()


def _bench_tenant(stack, idp: SamlIdP, http_for) -> dict:
    """A new active tenant with a verified domain, an API token, its SAML IdP ``idp`` and
    just-in-time accounts on (configured through the gateway with the token)."""
    import uuid

    from ontrackio.identity.v1 import access_pb2 as apb
    from ontrackio.identity.v1 import access_pb2_grpc as agrpc
    from ontrackio.identity.v1 import identity_pb2 as ipb
    from ontrackio.identity.v1 import identity_pb2_grpc as igrpc

    slug = f"bsaml{uuid.uuid4().hex[:8]}"
    domain = f"corp.{slug}.example.com"
    operator, cli = stack.channel("identity", "operator"), stack.channel("identity", "cli")
    try:
        tenants = igrpc.TenantServiceStub(operator)
        tenants.CreateTenant(
            ipb.CreateTenantRequest(slug=slug, name=slug, tier=ipb.TIER_BUSINESS, domains=[domain]),
            timeout=30,
        )
        deadline = time.monotonic() + 120
        while (
            tenants.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5).status
            != ipb.TENANT_STATUS_ACTIVE
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"tenant {slug} not active")
            time.sleep(0.1)
        tenants.VerifyDomain(ipb.VerifyDomainRequest(slug=slug, domain=domain), timeout=10)
        token = (
            agrpc.AccessServiceStub(cli)
            .CreateToken(
                apb.CreateTokenRequest(name="bench", scopes=["api:read", "api:write", "admin"]),
                metadata=(("x-ontrack-tenant", slug),),
                timeout=10,
            )
            .secret
        )
    finally:
        operator.close()
        cli.close()
    http = http_for(slug)
    try:
        http.json(
            "PUT",
            "/admin/api/v1/sso/saml",
            token,
            {
                "idp_entity_id": idp.entity_id,
                "sso_url": idp.sso_url,
                "certificates": [idp.signer.cert_pem],
                "email_attribute": EMAIL_ATTRIBUTE,
            },
        )
        http.json("PUT", "/admin/api/v1/signin-policy", token, {"jit_provisioning": True})
    finally:
        http.close()
    return {"slug": slug, "domain": domain, "token": token}


_FORKED: dict = {}  # what forked baseline processes read (set before the fork)


def _forked_process(chunk: list[tuple[str, str]]) -> int:
    process = _python3_saml(_FORKED["config"], _FORKED["sp"])
    for value, rid in chunk:
        process(value, rid)
    return len(chunk)


def capacity(
    http_for: Callable[[], Http],
    pool: list[tuple[str, str]],
    config: rules.IdpConfig,
    sp: rules.SpEndpoints,
    *,
    concurrency: int = 4,
    processes: int = 2,
    repeats: int = 3,
) -> tuple[dict, dict]:
    """Sign-ins per second with the machine busy: ``pool`` posted once each to the gateway
    by ``concurrency`` clients at once, against python3-saml's ``process_response`` in
    ``processes`` forked processes (as many as the machine has cores: what an application
    built on it could do) over the same responses ``repeats`` times (it has no replay
    cache). (figure, raw)."""
    import multiprocessing
    import queue
    import signal
    import threading

    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in pool:
        todo.put(item)
    refused: list[int] = []

    def client() -> None:
        http = http_for()
        try:
            while True:
                try:
                    value, rid = todo.get_nowait()
                except queue.Empty:
                    return
                if http.acs(value, rid) is None:
                    refused.append(1)
        finally:
            http.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ours = len(pool) / (time.perf_counter() - start)
    if refused:
        raise RuntimeError(f"the gateway refused {len(refused)} bench sign-ins")

    _FORKED.update(config=config, sp=sp)
    work = pool * repeats
    chunks = [work[k::processes] for k in range(processes)]
    # The forked workers keep the bench's signal handlers; SIGTERM (how the pool stops
    # them) must simply end them.
    with multiprocessing.get_context("fork").Pool(
        processes, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL)
    ) as workers:
        workers.map(_forked_process, [pool[:2]] * processes)  # imports and settings warm
        start = time.perf_counter()
        done = sum(workers.map(_forked_process, chunks))
        base = done / (time.perf_counter() - start)
    fig = figure(
        f"SAML ACS sign-ins through the gateway, {concurrency} clients at once",
        ours,
        base,
        "sign-ins/s",
        "",
        None,
        f"{len(pool)} sign-ins posted by {concurrency} keep-alive clients; baseline "
        f"process_response over the same responses x{repeats} in {processes} forked "
        "processes (one per core); the machine's capacity either way",
    )
    return fig, {"ours": ours, "python3-saml": base, "concurrency": concurrency}


def end_to_end(
    stack,
    *,
    responses: int = 200,
    users: int = 10,
    seconds: float = 60.0,
    concurrent: int = 200,
):
    """(figures, raw, sessions context) for ACS sign-ins through a gateway of the bench's own
    (bench.gateway._Gateway: the stack's, with rate limits raised) against python3-saml's
    ``process_response`` on the same responses.

    ``users`` people sign in once first (their accounts made just in time, untimed), so every
    timed sign-in is a returning user's: the account found by (issuer, NameID), a session
    opened. The request ids come from ``/auth/saml/login`` at that gateway; each response
    is posted once. The sessions context (gateway port and host, a signed-in user's cookie
    and id, an API token) is for bench/sessions.py, while the gateway still runs: it is
    stopped by the caller through ``context["stop"]``."""
    from bench.gateway import _Gateway

    gw = _Gateway(stack, workers=2)
    idp = SamlIdP("https://idp.bench.test/metadata")
    try:
        host_of = lambda slug: f"{slug}.localhost:{gw.port}"  # noqa: E731
        tenant = _bench_tenant(stack, idp, lambda slug: Http(gw.port, host_of(slug)))
        host = host_of(tenant["slug"])
        origin = f"http://{host}"
        sp = rules.SpEndpoints.from_origin(origin)
        http = Http(gw.port, host)
        # Each person signs in once (JIT): retried while identity's tenant cache may still
        # hold the tenant from before its domain was verified.
        cookies: list[str] = []
        deadline = time.monotonic() + 30
        for i in range(users):
            while True:
                rid = http.login()
                value = idp.encoded(
                    sp_entity_id=sp.entity_id,
                    acs_url=sp.acs_url,
                    in_response_to=rid,
                    name_id=user_email(i, tenant["domain"]),
                    attributes={EMAIL_ATTRIBUTE: [user_email(i, tenant["domain"])]},
                    authn_class=ENTRA_MFA,
                )
                cookie = http.acs(value, rid)
                if cookie:
                    cookies.append(cookie)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the bench tenant's first SAML sign-in was refused")
                time.sleep(0.5)
        log(f"saml: {users} people signed in once (accounts made just in time)")
        ids = [http.login() for _ in range(responses)]

        def consume(value: str, rid: str) -> None:
            if http.acs(value, rid) is None:
                raise RuntimeError("the gateway refused a bench sign-in")

        figs, raw = run(
            seconds,
            batch=10,
            consume=consume,
            request_ids=ids,
            idp=idp,
            origin=origin,
            domain=tenant["domain"],
            users=users,
            label="through the gateway",
        )
        made = time.perf_counter()
        more = responses_for(
            idp, sp, [http.login() for _ in range(concurrent)], domain=tenant["domain"], users=users
        )
        log(f"saml: {len(more)} more signed responses in {time.perf_counter() - made:.1f} s")
        fig, raw["capacity"] = capacity(
            lambda: Http(gw.port, host, http.bindings), more, config_for(idp), sp
        )
        figs.append(fig)
        me = json.loads(
            http.request("GET", "/api/v1/session", Cookie=f"{SESSION_COOKIE}={cookies[0]}")[2]
        )
        http.close()
        context = {
            "port": gw.port,
            "host": host,
            "cookie": cookies[0],
            "user_id": me["user"]["id"],
            "token": tenant["token"],
            "stop": gw.stop,
        }
        for f in figs[:1]:
            f["notes"] += (
                f"; each sign-in: POST /auth/saml/acs (gateway, 2 workers) -> identity"
                f" ConsumeResponse (checks, replay cache, request used once, account by"
                f" issuer + NameID, session, audit); {users} returning users"
            )
        return figs, raw, context
    except BaseException:
        gw.stop()
        raise
    finally:
        idp.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    figs, _ = run(args.seconds)
    print(json.dumps(figs, indent=2))


if __name__ == "__main__":
    main()
