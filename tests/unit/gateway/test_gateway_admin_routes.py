"""Admin-ness is decided on the route that matched: a differential property test.

For generated paths (odd Unicode, percent and double-percent encodings, backslashes, dot
segments, case), the Starlette router's own matching is run on the very scope the app got;
whenever it sends the request to an admin operation, a denied address must get the 403 and
the handler must not run. Checked without the edge (only the route-level check can refuse)
and behind the whole edge.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Match

from ontrackio.gateway.api.operation import PUBLIC, Call, Operation, Param, bearer
from ontrackio.gateway.paths import is_admin_path
from tests.unit.gateway.api_kit import INSIDE, OUTSIDE, tiny_app
from tests.unit.gateway.conftest import call

ran: list[str] = []


async def handler(c: Call, services):
    ran.append("ran")
    return {"ok": True}


ANY = {"type": "string"}
ADMIN = bearer("admin")
OPS = [
    Operation("GET", "/admin/api/v1/things", "things", "", handler, ADMIN, {}, admin=True),
    Operation(
        "GET",
        "/admin/api/v1/things/{id}",
        "thing",
        "",
        handler,
        ADMIN,
        {},
        params=(Param("id", "path", ANY),),
        admin=True,
    ),
    Operation("GET", "/api/v1/secret", "secret", "", handler, ADMIN, {}, admin=True),
    Operation("GET", "/api/v1/open", "open", "", handler, PUBLIC, {}),
    Operation(
        "GET",
        "/api/v1/items/{id}",
        "item",
        "",
        handler,
        PUBLIC,
        {},
        params=(Param("id", "path", ANY),),
    ),
    Operation(
        "GET",
        "/api/v1/files/{rest:path}",
        "files",
        "",
        handler,
        PUBLIC,
        {},
        params=(Param("rest", "path", ANY),),
    ),
]
ADMIN_PATHS = {op.path for op in OPS if op.admin}


class RouterOracle:
    """Sits right in front of the router: for each scope that reaches it, records which route
    the router itself will take (None: the request never reached the router)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.matched: str | None = None

    async def __call__(self, scope, receive, send):
        for route in self.app.router.routes:
            match, _ = route.matches(dict(scope))
            if match is Match.FULL:
                self.matched = route.path
                break
        await self.app(scope, receive, send)


class Subject:
    """An app under test and the oracle inside it."""

    def __init__(self, edge: bool) -> None:
        self.oracles: list[RouterOracle] = []

        def watch(starlette: Starlette) -> RouterOracle:
            self.oracles.append(RouterOracle(starlette))
            return self.oracles[-1]

        self.app = tiny_app(OPS, edge=edge, around_router=watch)
        self.oracle = self.oracles[0]

    def __call__(self, raw: bytes, decoded: str | None = None, *, client) -> object:
        self.oracle.matched = None
        return call(
            self.app,
            raw,
            decoded_path=decoded,
            client=client,
            headers=[("Authorization", "Bearer admin")],
        )

    @property
    def matched(self) -> str | None:
        return self.oracle.matched


ROUTE_ONLY = Subject(edge=False)
WITH_EDGE = Subject(edge=True)

FULL_WIDTH_ADMIN = quote("ａｄｍｉｎ")
PIECES = st.sampled_from(
    [
        "admin",
        "ADMIN",
        "Admin",
        "%61dmin",
        "%2561dmin",
        "%41DMIN",
        FULL_WIDTH_ADMIN,
        "adm%C4%B1n",
        "api",
        "v1",
        "things",
        "secret",
        "SECRET",
        "open",
        "items",
        "files",
        "x",
        "..",
        ".",
        "%2e%2e",
        "%2E",
        "%252e%252e",
        "",
        "%00",
        "%ff",
        "%ed%a0%80",
        ";a=b",
        "admin;x",
        "things%2f",
        "%20admin",
        "\\",
    ]
)
SEPARATORS = st.sampled_from(["/", "/", "/", "//", "\\", "%2f", "%2F", "%5c", "%252f"])


@st.composite
def raw_paths(draw) -> tuple[bytes, str]:
    pieces = draw(st.lists(PIECES, min_size=1, max_size=7))
    separators = [draw(SEPARATORS) for _ in pieces]
    raw = "".join(s + p for s, p in zip(separators, pieces, strict=True))
    if draw(st.booleans()):
        raw += "/"
    raw_bytes = raw.encode("ascii")
    return raw_bytes, unquote(raw)  # how uvicorn decodes the target it was sent


TEMPLATES = ["/admin/api/v1/things", "/admin/api/v1/things/x", "/api/v1/secret", "/api/v1/open"]


@st.composite
def mutated_paths(draw) -> tuple[bytes, str]:
    """An operation's path, each character perhaps percent-encoded (once or twice) or its
    case flipped, each slash perhaps doubled, encoded or a backslash, dot segments added."""
    out = []
    for ch in draw(st.sampled_from(TEMPLATES)):
        how = draw(st.sampled_from(["keep"] * 30 + ["pct", "pct2", "case"]))
        if ch == "/":
            ch = draw(st.sampled_from(["/"] * 12 + ["//", "\\", "%2f", "/./", "/x/../"]))
        elif how == "pct":
            ch = f"%{ord(ch):02X}"
        elif how == "pct2":
            ch = f"%25{ord(ch):02X}"
        elif how == "case":
            ch = ch.swapcase()
        out.append(ch)
    raw = "".join(out) + draw(st.sampled_from(["", "/", "/%2e%2e", "/..", "?q=1"]))
    raw = raw.split("?", 1)[0]
    return raw.encode("ascii"), unquote(raw)


@st.composite
def unicode_paths(draw) -> tuple[bytes, str]:
    prefix = draw(st.sampled_from(["/admin/api/v1/things/", "/api/v1/", "/", "/api/v1/items/"]))
    path = prefix + draw(st.text(max_size=12))
    return quote(path.encode("utf-8", "surrogatepass"), safe="/").encode("ascii"), path


def check(subject: Subject, raw: bytes, decoded: str) -> None:
    ran.clear()
    denied = subject(raw, decoded, client=OUTSIDE)
    if subject.matched in ADMIN_PATHS:
        event("routed to an admin operation")
        assert denied.status == 403 and denied.is_problem, (raw, decoded, denied.status)
        assert ran == [], (raw, decoded)
    else:
        event("routed elsewhere" if subject.matched else "refused or unmatched before a route")
    assert denied.status < 500


@pytest.mark.parametrize("subject", [ROUTE_ONLY, WITH_EDGE], ids=["route-only", "with-edge"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(raw_paths(), mutated_paths(), mutated_paths(), unicode_paths()))
@example((b"/admin/api/v1/things", "/admin/api/v1/things"))
@example((b"/api/v1/secret", "/api/v1/secret"))
@example((b"/admin/api/v1/things/%2e%2e", "/admin/api/v1/things/.."))
@example((b"/admin/api/v1/things/%2fadmin", "/admin/api/v1/things//admin"))
def test_every_route_to_an_admin_operation_is_allowlisted(subject, path):
    check(subject, *path)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"/admin/api/v1/things", "/admin/api/v1/things"),
        (b"/admin/api/v1/things/%00", "/admin/api/v1/things/\x00"),
        (b"/api/v1/secret", "/api/v1/secret"),
        (b"/admin/api/v1/things/%2e%2e", "/admin/api/v1/things/.."),
    ],
)
def test_the_oracle_sees_admin_routes_and_insiders_get_through(raw, decoded):
    # Not vacuous: these do route to admin operations, and an allowed address reaches them
    # (the NUL one then fails validation, after the allowlist).
    ran.clear()
    allowed = ROUTE_ONLY(raw, decoded, client=INSIDE)
    assert ROUTE_ONLY.matched in ADMIN_PATHS
    assert allowed.status in (200, 400)
    assert ran == (["ran"] if allowed.status == 200 else [])
    ran.clear()
    denied = ROUTE_ONLY(raw, decoded, client=OUTSIDE)
    assert denied.status == 403 and ran == []


def test_an_admin_operation_outside_admin_is_invisible_to_the_edge_check():
    # Only the route-level check can refuse /api/v1/secret: to the edge it is no admin path.
    assert not is_admin_path(b"/api/v1/secret")
    ran.clear()
    r = WITH_EDGE(b"/api/v1/secret", client=OUTSIDE)
    assert WITH_EDGE.matched == "/api/v1/secret"
    assert r.status == 403 and ran == []
