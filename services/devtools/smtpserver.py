"""A real SMTP server in-process for tests and ``make run`` (aiosmtpd): it keeps every message
it accepts, and can be told to refuse (temporarily, 451, or permanently, 550) to show that
the mail outbox retries and gives up as documented.

    with SmtpServer() as smtp:
        env = smtp.env()                 # ONTRACK_SMTP_* for the processes under test
        smtp.refuse(451)                 # every RCPT answered 451 until accept() again
        msg = smtp.wait_for(lambda m: m["To"] == "a@example.com", timeout=20)
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.messages: list[EmailMessage] = []
        self.refusing: int | None = None
        self.refused = 0  # RCPT commands refused so far

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options
    ) -> str:
        with self.lock:
            code = self.refusing
            if code is not None:
                self.refused += 1
        if code is not None:
            return f"{code} {'try again later' if code < 500 else 'no such mailbox'}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.lock.notify_all()
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (a free port), plain SMTP, no authentication."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = _Handler()
        self.controller = Controller(self.handler, hostname=host, port=port or _free_port(host))

    @property
    def host(self) -> str:
        return self.controller.hostname

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        return {
            "ONTRACK_SMTP_HOST": self.host,
            "ONTRACK_SMTP_PORT": str(self.port),
            "ONTRACK_SMTP_SECURITY": "none",
            "ONTRACK_MAIL_FROM": "OnTrackio <no-reply@ontrack.test>",
        }

    def refuse(self, code: int = 451) -> None:
        """Answer every recipient with ``code`` (4xx temporary, 5xx permanent)."""
        with self.handler.lock:
            self.handler.refusing = code

    def accept(self) -> None:
        with self.handler.lock:
            self.handler.refusing = None

    @property
    def refused(self) -> int:
        with self.handler.lock:
            return self.handler.refused

    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def wait_for(
        self, match: Callable[[EmailMessage], bool], timeout: float = 20.0
    ) -> EmailMessage:
        """The first accepted message ``match`` accepts; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.handler.lock:
            while True:
                for msg in self.handler.messages:
                    if match(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message within {timeout} s")
                self.handler.lock.wait(left)


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
