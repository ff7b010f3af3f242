"""Lab exports: the network CSV format from any site, site layouts (CSV/TSV/XLSX), three
ways in (HTTP, ``gateway import``, drop folders), one import report."""

from gateway.adapters.labexport.importer import import_export
from gateway.adapters.labexport.reader import NETWORK_LAYOUT, ExportFileError, read_table
from gateway.adapters.labexport.report import ImportReport

__all__ = ["NETWORK_LAYOUT", "ExportFileError", "ImportReport", "import_export", "read_table"]
