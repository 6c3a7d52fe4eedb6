"""Reconciliation with SIRENE and the RNA, and re-imports with rows missing (issue #12).

Real PostGIS, real files: the registry is imported from real lists (SIAE and médiation
numérique of départements 31/08, associations of Haute-Garonne) and reconciled with extracts in
the exact official layouts (tests/fixtures/reconcile, see its SOURCE.md).
"""

from __future__ import annotations

import csv
import io
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carteco.auth import create_token
from carteco.geocoding.backends import LocalBackend
from carteco.geocoding.reference import load_addresses
from carteco.importer import ImportFileError, run_import
from carteco.importer.mapping import Mapping
from carteco.importer.missing import FLAG_KEY, MissingActionError
from carteco.reconcile import SIRENE_KINDS, WALDEC, reconcile_file
from tests.conftest import FIXTURES, ROOT, assert_problem

HERE = FIXTURES / "reconcile"
ETAB = HERE / "StockEtablissement_utf8_extrait.csv"
UL = HERE / "StockUniteLegale_utf8_extrait.csv"
RNA = HERE / "rna_waldec_20250101_dpt_31_extrait.csv"
ASSOS = HERE / "registre_associations_31.csv"
SIAE = FIXTURES / "foncier" / "siae_31_08_2019-07.csv"
MEDIATION = FIXTURES / "foncier" / "mediation_numerique_31_08_2022.csv"
REFERENCE = FIXTURES / "geocoding" / "adresses-mediation-cnfs-2022.csv"


@pytest.fixture(scope="module")
def reference(engine: sa.Engine) -> Iterator[sa.Engine]:
    """The médiation-numérique addresses as the local geocoder's reference (removed after)."""
    with engine.begin() as conn:
        load_addresses(conn, [REFERENCE])
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE geo_addresses, geo_streets, geocode_cache"))
        conn.execute(sa.text("DELETE FROM geo_meta"))


def _empty(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "TRUNCATE structures, structure_sources, import_runs, proposals, reconcile_runs "
                "RESTART IDENTITY CASCADE"
            )
        )


def _import(engine: sa.Engine, path: Path, source: str, mapping: Path | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    report = run_import(
        engine, path, source=source, mapping=Mapping.from_file(mapping) if mapping else None, **kw
    )
    assert report.status == "succeeded", report.as_dict()
    return report


@pytest.fixture
def sirene_registry(reference: sa.Engine) -> sa.Engine:
    """SIAE (no points) and médiation numérique (points provided) of 31/08."""
    _empty(reference)
    _import(reference, SIAE, "siae", FIXTURES / "foncier" / "siae.mapping.toml")
    _import(
        reference,
        MEDIATION,
        "mediation",
        FIXTURES / "foncier" / "mediation_numerique.mapping.toml",
        skip_invalid=True,
    )
    return reference


def _by_siret(engine: sa.Engine, siret: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, status, closed_on, opened_on, ess_family, legal_category, version, "
                "ST_X(geom) AS lon, ST_Y(geom) AS lat, extra FROM structures "
                "WHERE siret = :s ORDER BY id"
            ),
            {"s": siret},
        ).mappings()
        return [dict(r) for r in rows]


def _proposals(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.*, s.siret, s.rna FROM proposals p "
                "JOIN structures s ON s.id = p.structure_id ORDER BY p.id"
            )
        ).mappings()
        return [dict(r) for r in rows]


def _metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    k = 111_320.0
    return math.hypot((lon2 - lon1) * k * math.cos(math.radians(lat1)), (lat2 - lat1) * 110_540)


def test_sirene_etablissement_closes_and_proposes_moves(sirene_registry: sa.Engine) -> None:
    engine = sirene_registry
    ordisol_before = _by_siret(engine, "83182740700014")[0]
    seen: list[tuple[int, int | None]] = []
    report = reconcile_file(
        engine, ETAB, SIRENE_KINDS, LocalBackend(engine), progress=lambda d, t: seen.append((d, t))
    )
    assert report.status == "succeeded", report.as_dict()
    assert report.kind == "sirene_etablissement"
    assert report.rows_read == 15
    assert seen and seen[-1][0] == seen[-1][1] == ETAB.stat().st_size

    # Closures applied, with the date of the closing period.
    for siret, closed_on in (
        ("48044602000079", date(2023, 6, 30)),
        ("81126320100014", date(2021, 12, 31)),
        ("44371783000055", date(2024, 3, 15)),
    ):
        rows = _by_siret(engine, siret)
        assert rows and all(r["status"] == "closed" for r in rows), siret
        assert {r["closed_on"] for r in rows} == {closed_on}
    assert report.counts["closed"] == 3

    # Moves: pending proposals with the new address and its re-geocoded point; nothing applied.
    props = {p["siret"]: p for p in _proposals(engine)}
    assert set(props) == {"77693922500020", "83182740700014"}
    assert report.counts["moved"] == 2
    japon = props["77693922500020"]
    assert japon["status"] == "pending" and japon["origin"] == "reconcile"
    assert japon["kind"] == "update"
    assert japon["changes"]["address_line"] == "38 AVENUE JEAN MOULIN"
    assert japon["changes"]["insee_code"] == "31555"
    lon, lat = japon["changes"]["geometry"]["coordinates"]
    assert _metres(lon, lat, 1.441695, 43.579108) < 30  # the reference address
    assert japon["previous"]["address_line"] == "15 Rue DU JAPON"
    assert japon["origin_detail"]["row"] == 10 and japon["origin_detail"]["run_id"]
    assert japon["raw"]["record"]["siret"] == "77693922500020"
    ordisol = props["83182740700014"]
    lon, lat = ordisol["changes"]["geometry"]["coordinates"]
    assert _metres(lon, lat, 1.758282, 43.528852) < 30
    assert ordisol["previous"]["geometry"]["coordinates"] == pytest.approx(
        [ordisol_before["lon"], ordisol_before["lat"]]
    )
    assert ordisol["origin_detail"]["distance_m"] > 40_000
    assert ordisol["base_version"] == ordisol_before["version"]
    after = _by_siret(engine, "83182740700014")[0]
    assert (after["lon"], after["lat"], after["status"]) == (
        ordisol_before["lon"],
        ordisol_before["lat"],
        "active",
    )

    # Unchanged rows (same address in SIRENE's spelling): nothing.
    for siret in ("79499527400022", "37966556500022", "39269993000039", "51934468300023"):
        assert all(r["status"] == "active" for r in _by_siret(engine, siret))
    assert report.counts["unchanged"] >= 3
    # A creation date fills an empty opened_on.
    assert _by_siret(engine, "80913778900016")[0]["opened_on"] == date(2015, 3, 2)

    # Bad rows: file, row, column, reason; the good rows were applied all the same.
    assert report.errors_total == 3
    by_row = {e.row: e for e in report.errors}
    assert by_row[14].column == "etatAdministratifEtablissement" and by_row[14].value == "X"
    assert by_row[15].column == "dateDebut" and "date" in by_row[15].reason
    assert by_row[16].column is None and "colonnes" in by_row[16].reason
    assert (
        by_row[15]
        .message(report.file)
        .startswith("StockEtablissement_utf8_extrait.csv, ligne 15, colonne « dateDebut »")
    )
    assert all(_by_siret(engine, s)[0]["status"] == "active" for s in ("50177759300028",))

    # The run is recorded; a second run changes nothing and proposes nothing again.
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM reconcile_runs")).mappings().one()
    assert run["status"] == "succeeded" and run["rows_read"] == 15
    assert run["summary"]["closed"] == 3 and len(run["errors"]) == 3
    again = reconcile_file(engine, ETAB, SIRENE_KINDS, LocalBackend(engine))
    assert again.counts["closed"] == 0 and again.counts["already_closed"] == 3
    assert again.counts["moved"] == 0 and again.counts["already_proposed"] == 2
    assert len(_proposals(engine)) == 2


def test_sirene_dry_run_and_strict_write_nothing(sirene_registry: sa.Engine) -> None:
    engine = sirene_registry
    dry = reconcile_file(engine, ETAB, SIRENE_KINDS, None, dry_run=True)
    assert dry.status == "dry_run" and dry.counts["closed"] == 3 and dry.counts["moved"] == 2
    strict = reconcile_file(engine, ETAB, SIRENE_KINDS, None, strict=True)
    assert strict.status == "rejected" and "rien n'a été écrit" in (strict.message or "")
    assert _proposals(engine) == []
    assert _by_siret(engine, "48044602000079")[0]["status"] == "active"
    # Without a geocoder the move is still proposed, without a point.
    report = reconcile_file(engine, ETAB, SIRENE_KINDS, None)
    assert report.counts["geocode_failed"] == 2
    assert all("geometry" not in p["changes"] for p in _proposals(engine))


def test_sirene_unite_legale_sets_family_and_closes(
    sirene_registry: sa.Engine, tmp_path: Path
) -> None:
    engine = sirene_registry
    report = reconcile_file(engine, UL, SIRENE_KINDS, None)
    assert report.kind == "sirene_unite_legale" and report.status == "succeeded"
    sas = _by_siret(engine, "48044602000079")[0]
    assert (sas["legal_category"], sas["ess_family"]) == ("5710", "societe_commerciale_ess")
    coop = _by_siret(engine, "50177759300028")[0]
    assert (coop["legal_category"], coop["ess_family"]) == ("5460", "cooperative")
    sarl = _by_siret(engine, "50937775000047")[0]
    assert (sarl["legal_category"], sarl["ess_family"]) == ("5499", "inconnue")
    asso = _by_siret(engine, "79499527400022")[0]
    assert (asso["legal_category"], asso["ess_family"]) == ("9220", "association")
    assert asso["opened_on"] == date(2013, 9, 2)
    ceased = _by_siret(engine, "40320376300186")
    assert ceased and all(
        (r["status"], r["closed_on"]) == ("closed", date(2022, 9, 30)) for r in ceased
    )
    assert {(e.row, e.column) for e in report.errors} == {
        (9, "categorieJuridiqueUniteLegale"),
        (10, "economieSocialeSolidaireUniteLegale"),
    }
    # The unit's creation date opens only its head office, not another establishment.
    other = _by_siret(engine, "39343298400051")[0]
    assert (other["opened_on"], other["legal_category"]) == (None, "9220")
    assert _by_siret(engine, "37966556500022")[0]["legal_category"] is None  # bad row skipped

    # The ESS flag withdrawn (O → N): the commercial company is no longer ESS.
    flag_on = "SIAE CORNEBARRIEU,,,,5710,88.99B,NAFRev2,00010,O,"
    text = UL.read_text(encoding="utf-8")
    assert flag_on in text
    text = text.replace(flag_on, flag_on[:-2] + "N,")
    changed = tmp_path / "StockUniteLegale_utf8.csv"
    changed.write_text(text, encoding="utf-8")
    again = reconcile_file(engine, changed, SIRENE_KINDS, None)
    assert again.counts["family_changed"] == 1
    assert _by_siret(engine, "48044602000079")[0]["ess_family"] == "inconnue"


def test_undecodable_bytes_are_reported_by_row(sirene_registry: sa.Engine, tmp_path: Path) -> None:
    lines = ETAB.read_bytes().splitlines(keepends=True)
    unknown = next(x for x in lines if x.startswith(b"100029172,"))
    known = next(x for x in lines if x.startswith(b"794995274,"))
    # UTF-8 for the first 64 KB (the encoding sample), then one Windows-1252 byte in a row of
    # the registry: that row is refused by name, the others are read.
    body = [lines[0], *[unknown] * 600, known.replace(b"MICHELET", b"MICH\xe9LET")]
    path = tmp_path / "StockEtablissement_utf8.csv"
    path.write_bytes(b"".join(body))
    report = reconcile_file(sirene_registry, path, SIRENE_KINDS, None, dry_run=True)
    assert report.encoding == "utf-8-sig" and report.rows_read == 601
    assert [(e.row, e.column) for e in report.errors] == [(602, "libelleVoieEtablissement")]
    assert "UTF-8" in report.errors[0].reason


def test_rna_waldec_closes_dissolved_and_proposes_moves(reference: sa.Engine) -> None:
    engine = reference
    _empty(engine)
    _import(engine, ASSOS, "associations-31")
    report = reconcile_file(engine, RNA, (WALDEC.kind,), LocalBackend(engine))
    assert report.kind == "rna" and report.encoding == "cp1252"
    assert report.rows_read == 11 and report.matched_rows == 9

    with engine.connect() as conn:
        rows = {
            r["rna"]: dict(r)
            for r in conn.execute(
                sa.text("SELECT rna, status, closed_on, opened_on, ess_family FROM structures")
            ).mappings()
        }
    assert (rows["W313010519"]["status"], rows["W313010519"]["closed_on"]) == (
        "closed",
        date(2023, 5, 12),
    )
    # Dissolved with no date given (0001-01-01): closed, no invented date.
    assert (rows["W313009644"]["status"], rows["W313009644"]["closed_on"]) == ("closed", None)
    # Deleted from the register (S): not a closure.
    assert rows["W313006110"]["status"] == "active"
    assert rows["W313009935"]["status"] == "active"
    assert rows["W313009935"]["opened_on"] == date(1990, 3, 13)
    assert rows["W313009935"]["ess_family"] == "association"

    props = _proposals(engine)
    assert [p["rna"] for p in props] == ["W313002590"]
    move = props[0]
    assert move["changes"]["address_line"] == "38 AVENUE JEAN MOULIN"
    assert move["changes"]["postcode"] == "31400"
    lon, lat = move["changes"]["geometry"]["coordinates"]
    assert _metres(lon, lat, 1.441695, 43.579108) < 30
    assert move["origin_detail"]["register"] == "RNA waldec"

    assert {(e.row, e.column) for e in report.errors} == {(11, "position"), (12, "date_creat")}


def test_wrong_layout_is_refused_with_its_missing_columns(engine: sa.Engine) -> None:
    with pytest.raises(ImportFileError) as exc:
        reconcile_file(engine, RNA, SIRENE_KINDS, None)
    assert "RNA waldec" in str(exc.value) and "SIRENE" in str(exc.value)
    with pytest.raises(ImportFileError) as exc:
        reconcile_file(engine, SIAE, (WALDEC.kind,), None)
    assert "colonnes absentes" in str(exc.value) and "date_disso" in str(exc.value)


def test_zipped_stock_is_read(sirene_registry: sa.Engine, tmp_path: Path) -> None:
    import zipfile

    z = tmp_path / "StockEtablissement_utf8.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(ETAB, "StockEtablissement_utf8.csv")
    report = reconcile_file(sirene_registry, z, SIRENE_KINDS, None, dry_run=True)
    assert report.file == "StockEtablissement_utf8.zip!StockEtablissement_utf8.csv"
    assert report.counts["closed"] == 3


# --- re-imports with rows missing ----------------------------------------------------------


def _siae_without(tmp_path: Path, n: int = 5) -> tuple[Path, list[str]]:
    """The SIAE file without n rows whose SIRET appears once; the SIRETs removed."""
    with SIAE.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    i = header.index("SIRET")
    once = [r[i] for r in body if sum(1 for x in body if x[i] == r[i]) == 1][:n]
    out = tmp_path / SIAE.name
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *[r for r in body if r[i] not in once]])
    out.write_text(buf.getvalue(), encoding="utf-8")
    return out, once


def _status(engine: sa.Engine, sirets: list[str]) -> list[tuple[str, Any, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT status, closed_on, extra ? :k AS flagged FROM structures "
                "WHERE siret = ANY(:s) ORDER BY siret"
            ),
            {"s": sirets, "k": FLAG_KEY},
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_missing_rows_flag_close_keep(clean_registry: sa.Engine, tmp_path: Path) -> None:
    engine = clean_registry
    mapping = FIXTURES / "foncier" / "siae.mapping.toml"
    _import(engine, SIAE, "siae", mapping)
    shorter, gone = _siae_without(tmp_path)

    flagged = _import(engine, shorter, "siae", mapping)  # default: flag
    assert flagged.missing is not None
    assert flagged.missing["action"] == "flag" and flagged.missing["count"] == 5
    assert {s["source_id"] for s in flagged.missing["structures"]} >= set()
    assert _status(engine, gone) == [("active", None, True)] * 5
    assert flagged.as_dict()["missing"]["count"] == 5

    back = _import(engine, SIAE, "siae", mapping)
    assert back.missing is not None and back.missing["back"] == 5
    assert _status(engine, gone) == [("active", None, False)] * 5

    closed = _import(engine, shorter, "siae", mapping, missing="close")
    assert closed.missing is not None and closed.missing["count"] == 5
    assert _status(engine, gone) == [("closed", date.today(), True)] * 5
    # Back in the file: the closure the mark made is undone.
    _import(engine, SIAE, "siae", mapping, missing="close")
    assert _status(engine, gone) == [("active", None, False)] * 5

    kept = _import(engine, shorter, "siae", mapping, missing="keep")
    assert kept.missing is not None and kept.missing["count"] == 0
    assert _status(engine, gone) == [("active", None, False)] * 5

    with pytest.raises(MissingActionError):
        run_import(engine, SIAE, source="siae", missing="delete")


def test_missing_close_only_flags_when_rows_were_rejected(
    clean_registry: sa.Engine, tmp_path: Path
) -> None:
    engine = clean_registry
    mapping = FIXTURES / "foncier" / "siae.mapping.toml"
    _import(engine, SIAE, "siae", mapping)
    shorter, gone = _siae_without(tmp_path, 2)
    with shorter.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    # One more row, unreadable (SIRET with a bad check digit): rejected, reported.
    rows.append([*rows[1][:7], "12345678901234", *rows[1][8:]])
    with shorter.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    report = _import(engine, shorter, "siae", mapping, missing="close", skip_invalid=True)
    assert report.rejected == 1
    assert report.missing is not None and report.missing["applied"] == "flag"
    assert "rejetée" in report.missing["note"]
    assert _status(engine, gone) == [("active", None, True)] * 2


def test_cli_reconcile_and_import_missing(
    database_url: str, sirene_registry: sa.Engine, tmp_path: Path
) -> None:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url, "COLUMNS": "200"}

    def carteco(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "carteco.cli", *args],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
        )  # fmt: skip

    r = carteco("reconcile", "sirene", str(ETAB), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "simulation" in r.stdout and "fermées : 3" in r.stdout
    assert "déménagements proposés : 2" in r.stdout
    assert (
        "StockEtablissement_utf8_extrait.csv, ligne 14, colonne « etatAdministratifEtablissement »"
        in r.stderr
    )
    assert _proposals(sirene_registry) == []
    r = carteco("reconcile", "rna", str(ETAB))
    assert r.returncode == 1 and "colonnes absentes" in r.stderr

    shorter, gone = _siae_without(tmp_path, 3)
    r = carteco("import", str(shorter), "--source", "siae", "--mapping",
                str(FIXTURES / "foncier" / "siae.mapping.toml"), "--missing", "close")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "absentes du fichier : 3 (fermées)" in r.stdout
    r = carteco("import", str(SIAE), "--missing", "nope")
    assert r.returncode == 2


def test_api_import_missing_option(client, engine: sa.Engine, clean_registry: sa.Engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        _, token = create_token(conn, "importeur-reconcile", ["import"])
    h = {"Authorization": f"Bearer {token}"}
    content = SIAE.read_bytes()
    bad = client.post(
        "/imports", files={"file": ("siae.csv", content, "text/csv")},
        data={"missing": "delete"}, headers=h,
    )  # fmt: skip
    assert_problem(bad, 400)
    r = client.post(
        "/imports", files={"file": ("siae.csv", content, "text/csv")},
        data={"missing": "close", "source": "siae-api"}, headers=h,
    )  # fmt: skip
    assert r.status_code == 202, r.text
    url = r.headers["location"].replace("http://testserver", "")
    deadline = time.monotonic() + 60
    while True:
        job = client.get(url, headers=h).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert job["report"]["missing"]["action"] == "close"
    assert job["report"]["missing"]["count"] == 0
