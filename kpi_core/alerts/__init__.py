"""Alerts: open contacts nearing or past their response and resolution targets, and KPIs turning to breach.

- `watch`: what is at risk or breached now, from the store's open contacts (`targets`: each contact's targets).
- `kpi_watch`: the configured KPIs whose running day or week is in breach.
- `decide`: which of those are new, and how each goes out (alone, held for quiet hours, over the rate cap,
  or summarised as already past when alerting started).
- `routing`, `sinks`, `messages`: where each alert goes, how it is sent, what it says.
- `state`: the store's record of every alert decided and every delivery, so each goes out once.
- `run`: one alerting pass (the daemon's `alerts` job); `listing`: what `helpdesk-kpi alerts` shows.
"""
