"""The mail outbox's retry plan and visit plan, the SMTP sender against a real in-process
SMTP server (devtools/smtpserver.py) and the breached-password API client against a local
range API."""

from __future__ import annotations

import hashlib
import http.server
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from ontrackio.devtools.smtpserver import SmtpServer
from ontrackio.identity.signin import breach
from ontrackio.identity.signin.mail_rules import DEAD, PENDING, RetryPlan, VisitPlan
from ontrackio.identity.signin.smtp import Outgoing, SendFailed, Smtp

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_retries_back_off_doubling_to_the_maximum_then_the_mail_is_dead():
    plan = RetryPlan(base_seconds=30, max_seconds=600, max_attempts=6)
    waits = [plan.after_failure(n, T0, permanent=False) for n in range(1, 6)]
    assert [w[0] for w in waits] == [PENDING] * 5
    assert [(w[1] - T0).total_seconds() for w in waits] == [30, 60, 120, 240, 480]
    assert plan.delay(7).total_seconds() == 600
    assert plan.after_failure(6, T0, permanent=False) == (DEAD, None)
    assert plan.after_failure(1, T0, permanent=True) == (DEAD, None)
    assert plan.delay(10_000).total_seconds() == 600  # no overflow


def test_a_database_is_visited_when_new_its_counter_moved_or_its_next_mail_is_due():
    plan, key = VisitPlan(), ("main", "acme")
    assert plan.due(key, 5, T0)  # never visited
    plan.visited(key, 5, None)
    assert not plan.due(key, 5, T0)
    assert plan.due(key, 6, T0)  # something was inserted
    plan.visited(key, 6, T0 + timedelta(seconds=30))
    assert not plan.due(key, 6, T0 + timedelta(seconds=29))
    assert plan.due(key, 6, T0 + timedelta(seconds=30))
    assert plan.due(key, None, T0)  # unknown counter
    plan.forget(key)
    assert plan.due(key, 6, T0)


def _smtp(server: SmtpServer, **kw) -> Smtp:
    settings = SimpleNamespace(
        smtp_host=server.host,
        smtp_port=server.port,
        smtp_security="none",
        smtp_username="",
        smtp_password=SecretStr(""),
        smtp_timeout_seconds=5.0,
        mail_from="OnTrackio <no-reply@ontrack.test>",
        **kw,
    )
    return Smtp(settings)


def test_a_message_reaches_a_real_smtp_server_as_utf8_text():
    with SmtpServer() as server:
        _smtp(server).send(Outgoing("zoë@example.com", "Welcome — acme", "Link: http://x/ ✓"))
        msg = server.wait_for(lambda m: True, timeout=5)
    assert msg["To"] == "zoë@example.com"
    assert msg["Subject"] == "Welcome — acme"
    assert msg["From"] == "OnTrackio <no-reply@ontrack.test>"
    assert "Link: http://x/ ✓" in msg.get_content()
    assert msg["Message-ID"].endswith("@ontrack.test>")


def test_a_4xx_refusal_is_temporary_and_a_5xx_permanent():
    with SmtpServer() as server:
        server.refuse(451)
        with pytest.raises(SendFailed) as temporary:
            _smtp(server).send(Outgoing("a@example.com", "s", "b"))
        assert not temporary.value.permanent and "451" in str(temporary.value)
        server.refuse(550)
        with pytest.raises(SendFailed) as permanent:
            _smtp(server).send(Outgoing("a@example.com", "s", "b"))
        assert permanent.value.permanent
        assert server.messages() == [] and server.refused == 2


def test_an_unreachable_server_is_a_temporary_failure():
    server = SmtpServer()  # never started: nothing listens on its port
    with pytest.raises(SendFailed) as failed:
        _smtp(server).send(Outgoing("a@example.com", "s", "b"))
    assert not failed.value.permanent


class _RangeApi(http.server.BaseHTTPRequestHandler):
    answers: dict[str, str] = {}
    asked: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        prefix = self.path.rsplit("/", 1)[-1]
        _RangeApi.asked.append((self.path, self.headers.get("Add-Padding")))
        body = _RangeApi.answers.get(prefix, "").encode()
        self.send_response(200 if prefix in _RangeApi.answers else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def range_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RangeApi.answers, _RangeApi.asked = {}, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_range_api_is_sent_five_hex_digits_and_the_count_read_from_the_answer(range_api):
    password = "tangerine orbit calliope"
    digest = hashlib.sha1(password.encode()).hexdigest().upper()
    _RangeApi.answers[digest[:5]] = f"{'0' * 35}:0\r\n{digest[5:]}:42\r\n{'F' * 35}:3\r\n"
    assert breach.BreachApi(range_api).times_seen(password) == 42
    assert _RangeApi.asked == [(f"/range/{digest[:5]}", "true")]
    assert breach.BreachApi(range_api).times_seen("another password entirely") is None  # 500


def test_a_clean_password_is_zero_and_an_unreadable_answer_is_not_a_verdict(range_api):
    password = "tangerine orbit calliope"
    digest = hashlib.sha1(password.encode()).hexdigest().upper()
    _RangeApi.answers[digest[:5]] = f"{'0' * 35}:7\n"
    assert breach.BreachApi(range_api).times_seen(password) == 0
    _RangeApi.answers[digest[:5]] = "<html>maintenance</html>"
    assert breach.BreachApi(range_api).times_seen(password) is None


def test_an_unreachable_range_api_is_not_a_verdict():
    assert breach.BreachApi("http://127.0.0.1:9", timeout=1).times_seen("x" * 12) is None
