"""Write-back: per-record KPI metrics pushed into the helpdesks as custom field values and private notes.

`push.push(store, settings)` computes the metrics (`metrics.py`), plans only the
differences against the ledger and the last sync (`planner.py`), and sends them through
each helpdesk's `Writer` within the budget; `fields.check` / `fields.create_missing`
compare the mapped fields with the helpdesk's definitions; `mappings.py` is the
vocabulary the settings check mappings against. This package's root imports nothing.
"""
