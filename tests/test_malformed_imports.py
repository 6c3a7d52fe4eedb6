"""Every malformed input is refused with a clear error; the registry stays byte-for-byte equal."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from carteco.importer import ImportFileError, run_import
from tests.conftest import checksum
from tests.malformed import corpus

CASES = corpus()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def loaded(demo_data: sa.Engine) -> sa.Engine:
    """The demo registry the malformed files must leave untouched."""
    return demo_data


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_import_is_refused(loaded: sa.Engine, tmp_path: Path, case) -> None:
    before = checksum(loaded)
    path = tmp_path / case.name
    path.write_bytes(case.data)
    try:
        report = run_import(loaded, path, source="mediation-numerique-2022")
    except ImportFileError as exc:
        message = str(exc)
        assert case.name in message
    else:
        assert report.status == "rejected", report.as_dict()
        assert report.created == report.updated == 0
        messages = [e.message(case.name) for e in report.errors]
        message = " | ".join(messages)
        if case.row is not None:
            assert any(e.row == case.row for e in report.errors), message
            assert all(e.reason for e in report.errors)
    assert case.reason in message, message
    assert checksum(loaded) == before
