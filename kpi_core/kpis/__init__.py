"""The KPI engine: the catalogue as data, computed in SQL over the store, stored with targets and diagnostics.

The entry points the CLI, the report, write-back and the daemon call are re-exported here.
"""

from kpi_core.kpis.api import ComputeSummary, compute, import_inputs, kpi_rows, previous_rows
from kpi_core.kpis.catalogue import CATALOGUE_IDS, KPIS, UnknownKpi
from kpi_core.kpis.diagnostics import DIAGNOSTIC_IDS, diagnose
from kpi_core.kpis.inputs import InputsError
from kpi_core.kpis.periods import PeriodError
from kpi_core.kpis.reasons import top_reasons
from kpi_core.kpis.scorecard import format_diagnostics, format_reasons, format_scorecard, rows_to_csv, rows_to_json
from kpi_core.kpis.segments import SegmentError

__all__ = [
    "CATALOGUE_IDS", "DIAGNOSTIC_IDS", "KPIS", "ComputeSummary", "InputsError", "PeriodError", "SegmentError",
    "UnknownKpi", "compute", "diagnose", "format_diagnostics", "format_reasons", "format_scorecard", "import_inputs",
    "kpi_rows", "previous_rows", "rows_to_csv", "rows_to_json", "top_reasons",
]
