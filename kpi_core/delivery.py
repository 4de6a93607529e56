"""Delivery: e-mail over SMTP and JSON over HTTP, shared by alerts and digests.

What leaves the program goes through here, so one place keeps the two promises every sink
makes: a failure is one `DeliveryError` sentence naming the sink by host (and port), never
the webhook's path or query (where tokens live) and never a password; and nothing here logs
a URL or a credential.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from kpi_core.settings import SmtpSettings

log = logging.getLogger(__name__)

WEBHOOK_ATTEMPTS = 3


class _HideWebhookPaths(logging.Filter):
    """urllib3 logs each request's path at debug level; a webhook's path is its token. The program keeps urllib3
    at warning (`logs.py`), but whoever turns it up must still not see a token: known webhook paths are masked."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: frozenset[str] = frozenset()

    def hide(self, path: str) -> None:
        self.paths = self.paths | {path}  # a new set, bound at once: a filter in another thread never sees it change

    def filter(self, record: logging.LogRecord) -> bool:
        paths = self.paths
        if paths:
            text = record.getMessage()
            masked = text
            for path in sorted(paths, key=len, reverse=True):  # the path with its query first
                masked = masked.replace(path, "/…")
            if masked != text:
                record.msg, record.args = masked, ()
        return True


_hidden = _HideWebhookPaths()
logging.getLogger("urllib3.connectionpool").addFilter(_hidden)


class DeliveryError(Exception):
    """A message could not be delivered; the text names the sink by host only."""


class _Retryable(Exception):
    """A webhook answer or connection failure worth another try (5xx, 429, no connection)."""


def sink_host(url: str) -> str:
    """The part of a webhook URL safe to show: its host and (non-default) port, never path, query or user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def smtp_context(smtp: SmtpSettings) -> ssl.SSLContext:
    """The TLS context for STARTTLS: the system's trust store, or only `[smtp] ca_file` when it is set."""
    if smtp.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(smtp.ca_file))
    except (OSError, ssl.SSLError):
        raise DeliveryError(f"[smtp] ca_file: cannot read certificates from {smtp.ca_file}") from None


def build_email(sender: str, to: Sequence[str], subject: str, text: str, html: str | None = None) -> EmailMessage:
    """A plain-text message, or multipart/alternative with the HTML part last (the one clients prefer)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def send_email(smtp: SmtpSettings, to: Sequence[str], subject: str, text: str, html: str | None = None) -> None:
    """Send one message to `to` through `[smtp]`: STARTTLS when asked, login when a username is set."""
    where = f"{smtp.host}:{smtp.port}"
    if not smtp.host or not smtp.sender:
        raise DeliveryError("[smtp] host and sender must be set to send e-mail")
    if not to:
        raise DeliveryError(f"no recipients given for e-mail through {where}")
    message = build_email(smtp.sender, to, subject, text, html)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as client:
            if smtp.starttls:
                client.starttls(context=smtp_context(smtp))
            if smtp.username:
                password = smtp.password.get_secret_value() if smtp.password else ""
                client.login(smtp.username, password)
            refused = client.send_message(message, to_addrs=list(to))
    except smtplib.SMTPAuthenticationError:
        raise DeliveryError(f"the mail server {where} rejected the login of [smtp] username") from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(f"the mail server {where} does not offer STARTTLS (set [smtp] starttls = false "
                            "only for a server on a trusted network)") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"the mail server {where} refused all {len(exc.recipients)} recipients") from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"the mail server {where} answered {exc.smtp_code}") from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS with the mail server {where} failed: {exc.reason or 'handshake error'}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"cannot reach the mail server {where}: {_os_reason(exc)}") from None
    if refused:
        log.warning("mail server %s refused %d of %d recipients", where, len(refused), len(to))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "connection failed"


def post_json(url: str, payload: Mapping[str, Any], *, timeout: float = 10.0) -> None:
    """POST `payload` as JSON; 5xx, 429 and connection errors are tried again (3 attempts), other 4xx never."""
    host = sink_host(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DeliveryError(f"the webhook for {host} is not an http(s) URL")
    for secret in (parts.path + (f"?{parts.query}" if parts.query else ""), parts.path):
        if secret.strip("/"):
            _hidden.hide(secret)
    retrying = Retrying(
        stop=stop_after_attempt(WEBHOOK_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type(_Retryable),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                _post_once(url, host, payload, timeout)
    except _Retryable as exc:
        raise DeliveryError(f"the webhook at {host} failed {WEBHOOK_ATTEMPTS} times: {exc}") from None


def _post_once(url: str, host: str, payload: Mapping[str, Any], timeout: float) -> None:
    # The exceptions of requests carry the full URL in their text: only their kind is passed on.
    try:
        response = requests.post(url, json=dict(payload), timeout=timeout)
    except requests.Timeout:
        raise _Retryable("timed out") from None
    except requests.ConnectionError:
        raise _Retryable("cannot connect") from None
    except requests.RequestException:
        raise DeliveryError(f"the webhook at {host} could not be called") from None
    status = response.status_code
    response.close()
    if status >= 500 or status == 429:
        raise _Retryable(f"answered {status}")
    if status >= 400:
        raise DeliveryError(f"the webhook at {host} answered {status}")


def slack_body(title: str, lines: Sequence[str]) -> dict[str, Any]:
    """A Slack-compatible body: `text` for notifications and clients without blocks, blocks for the layout.

    Slack caps a section's text at 3000 characters and a message at 50 blocks: long lists are cut
    with a closing line saying how many were left out.
    """
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    shown = list(lines[:45])
    for line in shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:2900]}})
    if len(lines) > len(shown):
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": f"… and {len(lines) - len(shown)} more"}]})
    text = "\n".join([title, *lines])
    return {"text": text[:3900], "blocks": blocks}
