"""CSV files exported by other tools (survey tools, spreadsheets): encoding and separator sniffed.

Spreadsheets save CSV in more than one way: UTF-8 with or without a byte-order mark,
UTF-16 ("Unicode text"), and with `;` instead of `,` where the comma is the decimal mark.
`read_text` accepts all of these, so an admin never has to re-save a file, and says in one
sentence what is wrong with a file it cannot read.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

SEPARATORS = (",", ";", "\t")


class CsvFileError(ValueError):
    """A file that cannot be read as CSV text; the message names the file."""


@dataclass(frozen=True)
class CsvText:
    """A file's text, ready for `csv.DictReader`, with the separator it uses."""

    text: str
    separator: str
    encoding: str

    def reader(self) -> csv.DictReader[str]:
        return csv.DictReader(io.StringIO(self.text, newline=""), delimiter=self.separator)


def read_text(path: Path) -> CsvText:
    """Read `path` as UTF-8 (with or without BOM) or UTF-16 CSV separated by `,`, `;` or tab."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CsvFileError(f"{path}: cannot be read: {exc.strerror}") from None
    encoding = _encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise CsvFileError(f"{path}: is not UTF-8 or UTF-16 text; save it from the spreadsheet as"
                           " \"CSV UTF-8\"") from None
    return CsvText(text, _separator(text), encoding)


def number_text(value: str, separator: str) -> str:
    """A number as Python reads it: "4,5" in a `;`-separated file (a decimal comma) becomes "4.5"."""
    if separator != "," and value.count(",") == 1 and "." not in value:
        return value.replace(",", ".")
    return value


def _encoding(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # the BOM says which byte order
    head = raw[:200]
    # UTF-16 without a BOM: ASCII text has a zero byte beside every character.
    if len(head) >= 4 and head[1::2].count(0) > len(head) // 4 and head[0::2].count(0) == 0:
        return "utf-16-le"
    if len(head) >= 4 and head[0::2].count(0) > len(head) // 4 and head[1::2].count(0) == 0:
        return "utf-16-be"
    return "utf-8"


def _separator(text: str) -> str:
    """The separator of the header line: whichever of `,` `;` tab it holds most of (`,` on a tie)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","
