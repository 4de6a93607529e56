"""The part of a message worth reading: HTML stripped, earlier replies and signatures cut, length bounded.

A reply e-mail carries the whole thread below it and often a signature; analysing those would give
the thread's language and mood rather than this message's. Everything here is a few regular
expressions over a bounded prefix, so a 2 MB mail costs what a page of text does.
"""

from __future__ import annotations

import html
import re

# What is read of the raw body at most (HTML and quoted thread included), what of its visible text is searched
# for quotes and signatures, and what is kept after cleaning.
RAW_LIMIT = 20_000
VISIBLE_LIMIT = 4_000
TEXT_LIMIT = 1_000

_FLAGS = re.IGNORECASE | re.DOTALL
# HTML elements whose content is never the customer's new text: styles, scripts, quoted replies.
_DROPPED_ELEMENTS = re.compile(
    r"<(style|script|head|blockquote)\b[^>]*>.*?(?:</\1\s*>|\Z)"
    r"|<div\b[^>]*class=[\"'][^\"']*(?:gmail_quote|moz-cite-prefix|OutlookMessageHeader)[^\"']*[\"'][^>]*>.*\Z",
    _FLAGS,
)
_LINE_BREAK_TAGS = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h[1-6]|p|div|li|tr)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]{0,2000}>")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# A body is treated as HTML when it has one of the tags mail bodies are made of; "<help@example.com>" is not one.
_LOOKS_LIKE_HTML = re.compile(
    r"<\s*/?\s*(?:html|body|div|p|br|span|table|tr|td|blockquote|a|b|i|u|strong|em|ul|ol|li|font|img|h[1-6]|"
    r"head|style|meta|center|hr)\b[^>]*>",
    re.IGNORECASE,
)

# The line that introduces a quoted earlier message, in the mail clients' languages ("On <date>, <who> wrote:",
# "Am <date> schrieb <who>:"); it may wrap once and always ends with a colon, unlike a customer's own sentence.
# Found from its verb backwards, so that lines merely starting with "On" or "El" cost nothing.
_ATTRIBUTION_END = re.compile(
    r"\b(?:wrote|schrieb|a\s+écrit|escribió|ha\s+scritto|escreveu|schreef|skrev|kirjoitti|napisał|написал)\b"
    r"[^\n]{0,200}:[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# The verbs as plain lowercase text: most messages have none, and a substring test is far cheaper than the regex.
_ATTRIBUTION_WORDS = ("wrote", "schrieb", "crit", "escribi", "scritto", "escreveu", "schreef", "skrev", "kirjoitti",
                      "napisa", "написал")
_ATTRIBUTION_START = re.compile(r"[ \t]*(?:(?:On|Am|Le|El|Il|Em|Op|Den|Dnia)\b|\d)", re.IGNORECASE)
ATTRIBUTION_MAX_LINE = 300
# The other markers of a quoted or forwarded message: a separator line or an Outlook header block.
_QUOTE_MARKER = re.compile(
    r"^[ \t]*-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|"
    r"Messaggio originale|Mensagem original|Oorspronkelijk bericht|Forwarded message)\s*-{2,}"
    r"|^[ \t]*_{10,}[ \t]*$"
    r"|^[ \t]*(?:From|Von|De|Da|Van):[^\n]*\n[ \t]*(?:Sent|Date|Gesendet|Datum|Envoyé|Enviado|Inviato|Verzonden):",
    re.IGNORECASE | re.MULTILINE,
)
# Lines quoted with ">" (plain-text replies); removed wherever they stand.
_QUOTED_LINE = re.compile(r"^[ \t]*>[^\n]*\n?", re.MULTILINE)
# Where a signature starts: the "-- " delimiter (RFC 3676), a phone's footer, or a line that is only a
# closing formula. Cut only when some text stands before it, so a message that is only "Thanks!" stays.
_SIGNATURE = re.compile(
    r"^(?:--[ \t]?$"
    r"|[ \t]*(?:Sent from my|Envoyé de mon|Von meinem|Enviado desde mi|Inviato da|Enviado do meu|Verstuurd vanaf)\b"
    r"|[ \t]*(?:best regards|kind regards|regards|best wishes|cheers|sincerely|mit freundlichen grüßen|"
    r"viele grüße|liebe grüße|beste grüße|mfg|cordialement|bien cordialement|bien à vous|saludos|"
    r"un saludo|atentamente|cordiali saluti|distinti saluti|saluti|atenciosamente|cumprimentos|"
    r"met vriendelijke groet(?:en)?|groeten|vriendelijke groet)[ \t]*[,.!]?[ \t]*$)",
    re.IGNORECASE | re.MULTILINE,
)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]{2,}|[\t\r\f\v\u00a0]")  # a single plain space is left alone
_BLANK_LINES = re.compile(r"\n\s*\n+")


def strip_html(text: str) -> str:
    """Visible text of an HTML body: quoted blocks, styles and scripts dropped, entities decoded."""
    text = _COMMENT.sub(" ", text)
    text = _DROPPED_ELEMENTS.sub("\n", text)
    text = _LINE_BREAK_TAGS.sub("\n", text)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


def _attribution_start(text: str) -> int | None:
    """Where the first attribution line ("On ... wrote:") starts, when it starts within its line or the one above."""
    lowered = text.lower()
    if not any(word in lowered for word in _ATTRIBUTION_WORDS):
        return None
    for match in _ATTRIBUTION_END.finditer(text):
        line = text.rfind("\n", 0, match.start()) + 1
        if match.start() - line <= ATTRIBUTION_MAX_LINE and _ATTRIBUTION_START.match(text, line):
            return line
        above = text.rfind("\n", 0, max(line - 1, 0)) + 1
        if line > 0 and line - above <= ATTRIBUTION_MAX_LINE and _ATTRIBUTION_START.match(text, above):
            return above
    return None


def cut_quoted(text: str) -> str:
    """The text above the first quoted earlier message, with any ">"-quoted lines removed."""
    marker = _QUOTE_MARKER.search(text)
    starts = [start for start in (_attribution_start(text), marker.start() if marker else None) if start is not None]
    if starts:
        text = text[: min(starts)]
    return _QUOTED_LINE.sub("", text)


def cut_signature(text: str) -> str:
    """The text above a signature, when there is text above it."""
    for match in _SIGNATURE.finditer(text):
        if text[: match.start()].strip():
            return text[: match.start()]
    return text


def prepare(text: str | None) -> str:
    """The message's own words, ready for the analyzers: at most `TEXT_LIMIT` characters, "" for nothing."""
    if not text:
        return ""
    text = text[:RAW_LIMIT]
    if "<" in text and _LOOKS_LIKE_HTML.search(text):
        text = strip_html(text)
    text = cut_signature(cut_quoted(text[:VISIBLE_LIMIT]))[: TEXT_LIMIT * 2]
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n", text).strip()
    return text[:TEXT_LIMIT]
