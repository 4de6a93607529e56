"""Fewer runs of Python's cyclic garbage collector while a sync streams records.

A sync makes and drops millions of small dicts (decoded pages, normalized rows), none of them
in reference cycles; reference counting frees them. With the default thresholds the
collector runs every 700 new objects and, as pages survive a few runs, keeps walking the
whole live heap again. Measured on a 50,000-ticket Zendesk sync: local processing (normalize
and store) 11.2 s -> 10.5 s of CPU, the HTTP client's 6.4 s -> 4.7 s. Thresholds go back
when the last sync ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Young generation collected every 50,000 new objects (not 700); the oldest every 100 of those.
SYNC_THRESHOLDS = (50_000, 20, 100)

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's thresholds for the block; nested and concurrent blocks share one raise."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*SYNC_THRESHOLDS)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                gc.set_threshold(*_saved)
