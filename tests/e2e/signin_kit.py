"""Signing in through the gateway's pages for end-to-end tests: a cookie jar over raw
sockets (``Browser``), invitations mailed to the test SMTP server and followed, an owner who
set a password."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import urlencode, urlsplit

from ontrackio.identity.v1 import signin_pb2 as spb
from ontrackio.identity.v1 import signin_pb2_grpc as sgrpc
from tests.e2e.test_gateway_kit import Reply, new_source, raw, request_bytes
from tests.helpers import md

PASSWORD = "tangerine orbit calliope 7"
LINK = re.compile(r"(https?://\S+/invite\?token=[A-Za-z0-9_.-]+)")
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def cli(system):
    return system.channel("identity", "cli")


def signin_stub(system):
    return sgrpc.SignInServiceStub(cli(system))


def cli_md(slug: str):
    return (*md(slug), ("x-ontrack-actor", "cli:e2e"))


class Browser:
    """A cookie jar and a source address over raw sockets to one tenant's host."""

    def __init__(self, gateway, slug: str):
        self.gateway, self.slug = gateway, slug
        self.host = gateway.host(slug)
        self.origin = f"http://{self.host}"
        self.jar: dict[str, str] = {}
        self.source = new_source()

    def _send(self, method: str, target: str, headers=(), body: bytes = b"") -> Reply:
        hdrs = list(headers)
        if self.jar:
            hdrs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items())))
        r = raw(
            self.gateway.port,
            request_bytes(method, target, self.host, hdrs, body, close=True),
            source=self.source,
        )
        for header in r.set_cookies:
            name, _, rest = header.partition("=")
            self.jar[name] = rest.split(";", 1)[0]
        return r

    def get(self, target: str) -> Reply:
        return self._send("GET", target)

    def post_form(self, target: str, fields: dict[str, str], *, origin: str | None = "") -> Reply:
        headers = [("Content-Type", "application/x-www-form-urlencoded")]
        if origin is not None:
            headers.append(("Origin", origin or self.origin))
        return self._send("POST", target, headers, urlencode(fields).encode())

    def form_token(self, page: Reply) -> str:
        m = FORM_TOKEN.search(page.body.decode())
        assert m, page.body[:500]
        return html.unescape(m.group(1))

    def csrf(self) -> str:
        """The session's CSRF token, as the front end reads it (GET /api/v1/session)."""
        r = self.get("/api/v1/session")
        assert r.status == 200, r
        return r.json()["csrf_token"]

    def send_json(self, method: str, target: str, body=None, *, csrf: str | None = None) -> Reply:
        """An unsafe JSON request as the front end sends it (Origin and X-CSRF-Token)."""
        headers = [("Origin", self.origin), ("X-CSRF-Token", csrf if csrf else self.csrf())]
        data = b""
        if body is not None:
            headers.append(("Content-Type", "application/json"))
            data = json.dumps(body).encode()
        return self._send(method, target, headers, data)

    def sign_in(self, email: str, password: str, **extra: str) -> Reply:
        page = self.get("/signin")
        assert page.status == 200, page
        fields = {"email": email, "password": password, "next": "/", **extra}
        fields["form_token"] = self.form_token(page)
        return self.post_form("/auth/password", fields)


def invite(system, gateway, slug: str, email: str, role: str = "owner"):
    return signin_stub(system).CreateInvitation(
        spb.CreateInvitationRequest(email=email, role=role, origin=f"http://{gateway.host(slug)}"),
        metadata=cli_md(slug),
        timeout=10,
    )


def link_of(smtp, email: str) -> str:
    msg = smtp.wait_for(lambda m: m["To"] == email, timeout=30)
    body = msg.get_content()
    m = LINK.search(body)
    assert m, body
    return m.group(1)


def accept(browser: Browser, link: str, password: str = PASSWORD) -> Reply:
    target = link[len(browser.origin) :]
    page = browser.get(target)
    assert page.status == 200, page
    token = dict(p.split("=", 1) for p in urlsplit(link).query.split("&"))["token"]
    return browser.post_form(
        "/invite",
        {
            "token": token,
            "password": password,
            "confirm": password,
            "form_token": browser.form_token(page),
        },
    )


def owner(system, gateway, smtp, slug: str) -> tuple[str, str]:
    """(email, user id) of an owner who set PASSWORD through their invitation."""
    email = f"owner-{slug}@example.com"
    invitation = invite(system, gateway, slug, email).invitation
    r = accept(Browser(gateway, slug), link_of(smtp, email))
    assert r.status == 303, r
    return email, invitation.user_id
