"""The KPI engine: the catalogue as data, computed in SQL over the store, stored with targets and diagnostics.

Callers import the module they need: `api` (compute, kpi_rows, previous_rows,
import_inputs), `diagnostics` (diagnose), `scorecard` (formatting), `catalogue` (the KPIs
as data). This package's root imports nothing, so that the settings can check targets
against the catalogue without importing the engine.
"""
