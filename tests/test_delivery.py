"""kpi_core.delivery against real receivers on loopback: an SMTP server with STARTTLS and AUTH, an HTTP server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from loopback_sinks import SMTP_PASSWORD, SMTP_USER, http_receiver, smtp_server
from pydantic import SecretStr

from kpi_core.delivery import DeliveryError, post_json, send_email, sink_host, slack_body
from kpi_core.settings import SmtpSettings

TOKEN = "T000/B000/XXXXsecretTOKEN"


def smtp_settings(port: int, ca_file: Path | None, **changes: object) -> SmtpSettings:
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "starttls": True, "username": SMTP_USER,
                                 "password": SecretStr(SMTP_PASSWORD), "sender": "kpi@acme.example",
                                 "timeout_seconds": 5.0, "ca_file": ca_file}
    values.update(changes)
    return SmtpSettings.model_validate(values)


def test_email_goes_out_over_starttls_with_login_as_text_and_html(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        send_email(smtp_settings(server.port, server.ca_file), ["lead@acme.example", "ops@acme.example"],
                   "First response at risk", "plain body\n", "<p>html body</p>")
        assert server.mailbox.logins == [SMTP_USER]
        [(rcpt, message)] = server.mailbox.messages
    assert rcpt == ["lead@acme.example", "ops@acme.example"]
    assert message["Subject"] == "First response at risk"
    assert message["From"] == "kpi@acme.example"
    assert message.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.get_payload()}
    assert parts["text/plain"].strip() == "plain body"
    assert parts["text/html"].strip() == "<p>html body</p>"


def test_a_wrong_password_names_the_server_never_the_password(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                               ) -> None:
    caplog.set_level(logging.DEBUG)
    with smtp_server(tmp_path) as server, pytest.raises(DeliveryError) as caught:
        send_email(smtp_settings(server.port, server.ca_file, password=SecretStr("wrong-" + SMTP_PASSWORD)),
                   ["lead@acme.example"], "s", "t")
    text = str(caught.value)
    assert f"127.0.0.1:{server.port}" in text and "login" in text
    assert SMTP_PASSWORD not in text and SMTP_PASSWORD not in caplog.text
    assert server.mailbox.messages == []


def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    """Without [smtp] ca_file the system's trust store does not know the test CA: TLS fails, nothing is sent."""
    with smtp_server(tmp_path) as server, pytest.raises(DeliveryError, match=r"TLS with the mail server 127\.0\.0\.1"):
        send_email(smtp_settings(server.port, None), ["lead@acme.example"], "s", "t")
    assert server.mailbox.messages == []


def test_an_unreachable_mail_server_is_one_sentence(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        port = server.port  # closed once the block ends
    with pytest.raises(DeliveryError, match=rf"^cannot reach the mail server 127\.0\.0\.1:{port}: "):
        send_email(smtp_settings(port, None), ["lead@acme.example"], "s", "t")


def test_webhook_posts_json_and_retries_a_5xx(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver() as receiver:
        receiver.status = [503]
        post_json(f"{receiver.url}/hooks/{TOKEN}?key=abc", {"title": "x", "n": 1}, timeout=5)
    assert [body for _, body in receiver.posts] == [{"title": "x", "n": 1}] * 2
    assert receiver.posts[0][0] == f"/hooks/{TOKEN}?key=abc"
    assert TOKEN not in caplog.text


def test_webhook_4xx_is_not_retried_and_the_error_shows_the_host_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver() as receiver:
        receiver.status = [404]
        with pytest.raises(DeliveryError) as caught:
            post_json(f"{receiver.url}/hooks/{TOKEN}", {"a": 1}, timeout=5)
    assert len(receiver.posts) == 1
    host = receiver.url.removeprefix("http://")
    assert str(caught.value) == f"the webhook at {host} answered 404"
    assert TOKEN not in caplog.text


def test_webhook_that_keeps_failing_gives_up_after_three_tries() -> None:
    with http_receiver() as receiver:
        receiver.status = [500, 502, 503]
        with pytest.raises(DeliveryError, match="failed 3 times: answered 503") as caught:
            post_json(f"{receiver.url}/hooks/{TOKEN}", {"a": 1}, timeout=5)
    assert len(receiver.posts) == 3
    assert TOKEN not in str(caught.value)


def test_sink_host_drops_path_query_and_user_info() -> None:
    assert sink_host("https://user:pw@hooks.slack.com/services/T/B/X?token=1") == "hooks.slack.com"
    assert sink_host("http://127.0.0.1:8080/x/y") == "127.0.0.1:8080"


def test_slack_body_has_text_and_blocks_and_cuts_long_lists() -> None:
    body = slack_body("3 contacts at risk", [f"zendesk #{i}" for i in range(60)])
    assert body["text"].startswith("3 contacts at risk\nzendesk #0")
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "3 contacts at risk"}}
    assert len(body["blocks"]) == 1 + 45 + 1
    assert body["blocks"][-1]["elements"][0]["text"] == "… and 15 more"


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server, pytest.raises(DeliveryError, match=r"^\[smtp\] ca_file: cannot read"):
        send_email(smtp_settings(server.port, tmp_path / "missing.pem"), ["lead@acme.example"], "s", "t")
    assert server.mailbox.messages == []
