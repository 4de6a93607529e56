"""Real receivers on loopback for the alert and digest tests: an SMTP server (aiosmtpd, STARTTLS with a CA made
by trustme, AUTH) and an HTTP receiver (http.server in a thread) that records every POST."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SMTP_USER, SMTP_PASSWORD = "alerts", "s3cret-smtp-pw"
# aiosmtpd warns of its own deprecated session attribute on every login, from its server thread.
logging.getLogger("mail.log").setLevel(logging.ERROR)


@dataclass
class Mailbox:
    """What the SMTP server accepted: (envelope recipients, parsed message)."""

    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    mailbox: Mailbox
    ca_file: Path


def free_port() -> int:
    """A loopback port free now (aiosmtpd's controller checks its server by connecting, so port 0 will not do)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(tmp: Path, *, require_auth: bool = True) -> Iterator[SmtpServer]:
    """An SMTP server on a free loopback port offering STARTTLS (certificate of a CA written to tmp/ca.pem)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mailbox = Mailbox()

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER \
                and data.password.decode() == SMTP_PASSWORD:
            mailbox.logins.append(SMTP_USER)
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True,
                            authenticator=authenticate, auth_required=require_auth, auth_require_tls=True)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", controller.port, mailbox, ca_file)
    finally:
        controller.stop()


@dataclass
class Receiver:
    """Every POST the HTTP receiver got: (path, JSON body). `status` is what it answers; `hold` makes the
    handler wait (after reading the body) until released, to stand for a request in flight: every request, or
    those `hold_when` picks. `held` is set when a request is being held."""

    url: str
    posts: list[tuple[str, Any]] = field(default_factory=list)
    status: list[int] = field(default_factory=list)  # answers to give in turn; 200 once empty
    hold: threading.Event | None = None
    hold_when: Callable[[Any], bool] | None = None
    held: threading.Event = field(default_factory=threading.Event)


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            receiver.posts.append((self.path, body))
            if receiver.hold is not None and (receiver.hold_when is None or receiver.hold_when(body)):
                receiver.held.set()
                receiver.hold.wait(30)
            code = receiver.status.pop(0) if receiver.status else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        if receiver.hold is not None:
            receiver.hold.set()
        server.shutdown()
        server.server_close()
