"""Registry import: read a file, map its columns, validate each row, upsert in one transaction."""

from carteco.importer.dispatch import run_import
from carteco.importer.errors import ImportFileError, RowError, safe_file_name
from carteco.importer.pipeline import ImportReport
from carteco.importer.readers import ReadLimits

__all__ = [
    "ImportFileError",
    "ImportReport",
    "ReadLimits",
    "RowError",
    "run_import",
    "safe_file_name",
]
