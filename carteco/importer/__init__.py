"""Registry import: read a file, map its columns, validate each row, upsert in one transaction."""

from carteco.importer.errors import ImportFileError, RowError
from carteco.importer.pipeline import ImportReport, run_import

__all__ = ["ImportFileError", "ImportReport", "RowError", "run_import"]
