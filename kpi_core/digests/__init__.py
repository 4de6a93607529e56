"""Review digests: the last complete day, week, month or quarter against the one before, sent by e-mail,
webhook or file.

    digest = gather(store, settings, "weekly", last_complete("weekly", now, zone))
    render.text(digest), render.html(digest)
    deliver.deliver(store, settings, digest, deliver.configured(settings, digest.cadence))
    due.send_due(store, settings)          # the daemon: each enabled digest once per period
"""

from __future__ import annotations

from kpi_core.digests.gather import Digest, gather
from kpi_core.digests.periods import BY_PERIOD, CADENCES, last_complete

__all__ = ["BY_PERIOD", "CADENCES", "Digest", "gather", "last_complete"]
