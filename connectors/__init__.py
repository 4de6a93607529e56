"""Helpdesk connectors: one package per vendor, registered as plugins (see `registry.py`).

What every connector shares lives here once: the contract (`base.py`), the plugin
descriptor (`plugin.py`), common settings (`settings.py`), the HTTP client (`http.py`),
record parsing and the quarantine guard (`records.py`), paginators (`paging.py`), the
writer base (`writing.py`) and the sandbox machinery (`sandbox/`).
"""
