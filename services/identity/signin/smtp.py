"""Sending one message to the configured SMTP server (smtplib), and telling a temporary
failure from a permanent one.

``ONTRACK_SMTP_SECURITY``: ``starttls`` (the default; the server's certificate is verified
against the system's CAs), ``tls`` (implicit TLS, port 465) or ``none`` (loopback only
outside development mode: config.py refuses it for another host). Credentials, when set,
are sent only over TLS. Messages are plain text, UTF-8.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid


class SendFailed(Exception):
    """The server did not take the message; ``permanent`` for a 5xx refusal of the recipient
    or the message (a refused login or sender is our configuration: temporary). The message
    names the failure's kind and code, never the message's text."""

    def __init__(self, summary: str, *, permanent: bool):
        super().__init__(summary)
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    recipient: str
    subject: str
    body: str


def build(sender: str, mail: Outgoing, *, domain: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(mail.body, charset="utf-8")
    return msg


class Smtp:
    """The settings' SMTP server; ``send`` opens one connection per call."""

    def __init__(self, settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self.password = settings.smtp_password.get_secret_value()
        self.timeout = settings.smtp_timeout_seconds
        self.sender = settings.mail_from

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            client.starttls(context=context)
        return client

    def send(self, mail: Outgoing) -> None:
        """Deliver ``mail`` to the server, or raise SendFailed."""
        domain = self.sender.rpartition("@")[2].strip("> ") or "localhost"
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password)
                client.send_message(build(self.sender, mail, domain=domain))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise SendFailed(
                f"recipient refused ({codes[0] if codes else '?'})",
                permanent=all(500 <= c < 600 for c in codes),
            ) from None
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
            # Our own configuration at fault: the message waits until an operator fixes it.
            raise SendFailed(f"{type(exc).__name__} ({exc.smtp_code})", permanent=False) from None
        except smtplib.SMTPResponseException as exc:
            raise SendFailed(
                f"{type(exc).__name__} ({exc.smtp_code})", permanent=500 <= exc.smtp_code < 600
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SendFailed(type(exc).__name__, permanent=False) from None
