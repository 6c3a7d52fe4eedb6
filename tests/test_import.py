"""Imports of real files into PostGIS: counts, idempotence, one transaction, formats."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from carteco.demo import DEMO_SOURCES
from carteco.importer import ImportFileError, run_import
from carteco.importer.mapping import Mapping

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent


def _demo(source: str):
    return next(d for d in DEMO_SOURCES if d.source == source)


def _count(engine: sa.Engine, where: str = "true", **params: object) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"SELECT count(*) FROM structures WHERE {where}"), params
            ).scalar_one()
        )


def _import(engine, path, source, mapping=None, **kw):
    m = Mapping.from_file(mapping) if isinstance(mapping, Path) else mapping
    return run_import(engine, path, source=source, mapping=m, **kw)


def test_demo_files_counts_and_reimport(clean_registry: sa.Engine) -> None:
    eng = clean_registry
    siae = _demo("siae-2019")
    with siae.path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    expected = len({r["SIRET"] for r in rows})  # a SIAE under several measures is one structure
    r1 = _import(eng, siae.path, siae.source, siae.mapping_path)
    assert (r1.rows_read, r1.created, r1.rejected) == (409, expected, 0)
    # Measures become sectors; merged rows keep every measure.
    measures: dict[str, set[str]] = {}
    for r in rows:
        measures.setdefault(r["SIRET"], set()).add(r["MESURE"])
    multi = sorted(s for s, m in measures.items() if len(m) > 1)
    with eng.connect() as conn:
        sectors = conn.execute(
            sa.text("SELECT sectors FROM structures WHERE siret = :s"), {"s": multi[0]}
        ).scalar_one()
    assert len(sectors) >= 2 and all(s.startswith("insertion.") for s in sectors)
    assert _count(eng, "geocode_status = 'to_geocode' AND geom IS NULL") == expected

    med = _demo("mediation-numerique-2022")
    r2 = _import(eng, med.path, med.source, med.mapping_path, skip_invalid=True)
    assert r2.rows_read == 243 and r2.rejected == 2
    assert {e.row for e in r2.errors} == {79, 148}
    assert r2.created + r2.updated == 241
    coop = _demo("supermarches-cooperatifs-2025")
    r3 = _import(eng, coop.path, coop.source, coop.mapping_path)
    assert (r3.rows_read, r3.created) == (17, 17)
    total = _count(eng)

    # The same files again: nothing changes.
    for d in (siae, med, coop):
        again = _import(eng, d.path, d.source, d.mapping_path, skip_invalid=d.skip_invalid)
        assert (again.created, again.updated) == (0, 0), again.as_dict()
    assert _count(eng) == total
    with eng.connect() as conn:
        runs = conn.execute(sa.text("SELECT status, count(*) FROM import_runs GROUP BY 1")).all()
    assert dict(runs) == {"succeeded": 6}


def test_bad_row_in_the_middle_writes_nothing(clean_registry: sa.Engine, tmp_path: Path) -> None:
    siae = _demo("siae-2019")
    text = siae.path.read_text(encoding="utf-8").splitlines()
    # Line 200 of the file gets a SIRET with a wrong check digit.
    cells = next(csv.reader([text[199]]))
    good = cells[7]
    cells[7] = good[:-1] + str((int(good[-1]) + 1) % 10)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    text[199] = buf.getvalue()
    bad = tmp_path / "siae_bad.csv"
    bad.write_text("\n".join(text) + "\n", encoding="utf-8")
    report = _import(clean_registry, bad, "siae-bad", siae.mapping_path)
    assert report.status == "rejected"
    assert _count(clean_registry) == 0
    [err] = report.errors
    assert (err.row, err.column, err.value) == (200, "SIRET", cells[7])
    assert "Luhn" in err.reason
    msg = err.message("siae_bad.csv")
    assert "siae_bad.csv" in msg and "ligne 200" in msg and "SIRET" in msg
    with clean_registry.connect() as conn:
        run = conn.execute(sa.text("SELECT status, rejected, errors FROM import_runs")).one()
    assert run.status == "rejected" and run.rejected == 1 and run.errors[0]["row"] == 200

    # --skip-invalid writes the others and records the rejected row.
    report = _import(clean_registry, bad, "siae-bad", siae.mapping_path, skip_invalid=True)
    assert report.status == "succeeded" and report.rejected == 1
    assert _count(clean_registry) == report.created > 300


def test_dry_run_writes_nothing(clean_registry: sa.Engine) -> None:
    coop = _demo("supermarches-cooperatifs-2025")
    report = _import(clean_registry, coop.path, coop.source, coop.mapping_path, dry_run=True)
    assert report.status == "dry_run" and report.created == 17
    assert _count(clean_registry) == 0


def test_windows_1252_semicolon_file(clean_registry: sa.Engine, tmp_path: Path) -> None:
    med = _demo("mediation-numerique-2022")
    with med.path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:30]
    rows = [r for r in rows if r["siret"] == "" or len(r["siret"]) == 14][:20]
    path = tmp_path / "lieux_cp1252.csv"
    with path.open("w", encoding="cp1252", errors="replace", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=";")
        w.writeheader()
        w.writerows(rows)
    assert "é".encode("cp1252") in path.read_bytes()
    report = _import(clean_registry, path, "cp1252", med.mapping_path, skip_invalid=True)
    assert report.format == "csv" and report.created == len(rows) - report.rejected
    with clean_registry.connect() as conn:
        names = set(conn.execute(sa.text("SELECT name FROM structures")).scalars())
    assert {r["nom"] for r in rows} & names  # accents survived the decoding
    accented = [r["nom"] for r in rows if any(c in r["nom"] for c in "éèàç")]
    assert set(accented) <= names


def test_xlsx(clean_registry: sa.Engine, tmp_path: Path) -> None:
    import openpyxl

    siae = _demo("siae-2019")
    with siae.path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:25]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(list(rows[0]))
    for r in rows:
        # Spreadsheets store SIRETs and postcodes as numbers: leading zeros get lost.
        vals = [int(v) if k in ("SIRET", "CODE_POSTAL") else v for k, v in r.items()]
        ws.append(vals)
    path = tmp_path / "siae.xlsx"
    wb.save(path)
    report = _import(clean_registry, path, "xlsx", siae.mapping_path)
    assert report.format == "xlsx" and report.rejected == 0
    assert report.created == len({r["SIRET"] for r in rows})
    with clean_registry.connect() as conn:
        sirets = set(conn.execute(sa.text("SELECT siret FROM structures")).scalars())
    assert sirets == {r["SIRET"] for r in rows}


def test_geojson_and_territory_tags(clean_registry: sa.Engine) -> None:
    coop = _demo("supermarches-cooperatifs-2025")
    report = _import(clean_registry, coop.path, coop.source, coop.mapping_path)
    assert report.format == "geojson" and report.created == 17
    # Every point is in IDF: tagged with région 11 and its commune.
    assert _count(clean_registry, "region_code = '11' AND commune_code IS NOT NULL") == 17
    assert _count(clean_registry, "location_precision = 'provided'") == 17


def test_gogocarto_export(clean_registry: sa.Engine) -> None:
    path = FIXTURES / "gogocarto" / "transiscope_elements.json"
    report = _import(
        clean_registry, path, "transiscope", FIXTURES / "gogocarto" / "transiscope.mapping.toml"
    )
    assert report.format == "gogocarto"
    assert (report.created, report.rejected) == (100, 0), report.errors[:3]
    with clean_registry.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT sectors, extra, departement_code FROM structures WHERE source_id = '3paH'"
            )
        ).one()
    assert row.sectors == []  # no category in the source
    assert row.extra["fiche_url"].startswith("https://presdecheznous.fr/")
    assert row.departement_code == "79"  # outside IDF: tagged from the France layer
    assert _count(clean_registry, "'alimentation' = ANY(sectors)") == 51


def test_carteco_labels_and_region_categories() -> None:
    from carteco.importer.readers import SourceRow
    from carteco.importer.validate import RowValidator
    from carteco.sectors import load_taxonomy

    labels = [
        "Gestion des ressources et déchets",
        "Agriculture et alimentation durables",
        "Seconde vie des produits (collecte, réparation, réemploi...)",
        "Réparation",
        "Réemploi",
        "Recyclerie / Ressourcerie",
        "Sensibilisation à la prévention",
        "Ecoconception",
        "Bâtiment durable",
        "Recherche & développement",
        "Récupération d'invendus",
        "Île-de-France",
        "Occitanie",
    ]
    v = RowValidator(Mapping(), {"name": "name", "sectors": "categories"}, load_taxonomy())
    rec, errs = v.validate(SourceRow(2, {"name": "Ressourcerie", "categories": labels}))
    assert errs == [] and rec is not None
    assert len(rec.values["sectors"]) == 11  # the two région names map to nothing
    _, errs = v.validate(SourceRow(3, {"name": "X", "categories": ["Astrologie"]}))
    assert [(e.row, e.column, e.value) for e in errs] == [(3, "categories", "Astrologie")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "fichier vide"),
        (b"nom,siret,nom\nA,1,B\n", "en double"),
        (b'{"type": "Feature"}', "FeatureCollection"),
        (b"foo,bar\n1,2\n", "aucune colonne de nom"),
    ],
)
def test_unreadable_files(
    clean_registry: sa.Engine, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / ("x.json" if content.startswith(b"{") else "x.csv")
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as exc:
        _import(clean_registry, path, "bad")
    assert reason in str(exc.value) and path.name in str(exc.value)
    assert _count(clean_registry) == 0


def test_row_errors_name_row_column_reason(clean_registry: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "mix.csv"
    path.write_text(
        "nom;siret;latitude;longitude;code_postal;secteur\n"
        "Bon;;48.85;2.35;75011;Réemploi\n"
        "Hors France;;40.7;-74.0;75011;Réemploi\n"
        "Inversé;;2.35;48.85;75011;Réemploi\n"
        "Illisible;;48,8x;2.3;75011;Réemploi\n"
        "CP;;48.85;2.35;7501;Réemploi\n"
        "Secteur;;48.85;2.35;75011;Astrologie\n",
        encoding="utf-8",
    )
    report = _import(clean_registry, path, "mix")
    assert report.status == "rejected" and _count(clean_registry) == 0
    got = {(e.row, e.column): e.reason for e in report.errors}
    assert "hors de France" in got[(3, "longitude/latitude")]
    assert "inversées" in got[(4, "longitude/latitude")]
    assert "nombre illisible" in got[(5, "latitude")]
    assert (6, "code_postal") not in got  # 4 digits: a lost leading zero, repaired to 07501
    assert "secteur inconnu" in got[(7, "secteur")]


def test_lambert93_columns(clean_registry: sa.Engine, tmp_path: Path) -> None:
    # Hôtel de ville de Montreuil in Lambert-93 (EPSG:2154).
    path = tmp_path / "l93.csv"
    path.write_text("nom,x,y\nMairie de Montreuil,660366,6862278\n", encoding="utf-8")
    report = _import(clean_registry, path, "l93")
    assert report.created == 1, report.errors
    with clean_registry.connect() as conn:
        row = conn.execute(sa.text("SELECT commune_code, ST_X(geom) AS lon FROM structures")).one()
    assert row.commune_code == "93048" and 2.43 < row.lon < 2.47


def test_cross_source_merge_by_siret(clean_registry: sa.Engine, tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("nom,siret,secteur\nLa Fabrique,41071771400035,Réemploi\n", encoding="utf-8")
    b = tmp_path / "b.json"
    b.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [2.44, 48.86]},
                        "properties": {
                            "id": "x1",
                            "nom": "Fabrique (antenne)",
                            "siret": "41071771400035",
                            "secteur": "Réparation",
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    assert _import(clean_registry, a, "a").created == 1
    rb = _import(clean_registry, b, "b")
    assert (rb.created, rb.updated) == (0, 1)
    with clean_registry.connect() as conn:
        s = conn.execute(sa.text("SELECT name, sectors, commune_code FROM structures")).one()
    assert s.name == "La Fabrique"  # the owner's fields are kept
    assert s.sectors == ["dechets.reemploi", "dechets.reparation"]
    assert s.commune_code == "93048"  # the located source gave the point
    again = _import(clean_registry, b, "b")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


def _in_subprocess(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, with a generous timeout (a hang fails, not a time)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("value", ["x", None])
def test_xlsx_far_cell_work_is_bounded_by_content(tmp_path: Path, value: object) -> None:
    """A 4.9 KB sheet whose only far cell is XFD1048576 (a value, or an empty styled cell)."""
    from tests.malformed import xlsx_far_cell

    path = tmp_path / "far.xlsx"
    path.write_bytes(xlsx_far_cell(value))
    assert path.stat().st_size < 10_000
    code = f"""
from pathlib import Path
from carteco.importer.errors import ImportFileError
from carteco.importer.readers import read_table
try:
    table = read_table(Path({str(path)!r}))
except ImportFileError as exc:
    print("REFUSED", exc)
else:
    print("ROWS", len(table.rows), table.headers)
"""
    res = _in_subprocess(code)
    assert res.returncode == 0, res.stderr
    if value is None:  # nothing written far away: the two real rows only
        assert "ROWS 1 ['nom', 'code_postal']" in res.stdout, res.stdout
    else:
        assert "REFUSED far.xlsx" in res.stdout and "XFD1048576" in res.stdout, res.stdout
        assert "CARTECO_IMPORT_MAX_COLUMNS" in res.stdout


def test_import_limits_are_settings(tmp_path: Path) -> None:
    from carteco.importer.readers import ReadLimits, read_table
    from carteco.settings import Settings

    limits = ReadLimits.from_settings(Settings(import_max_rows=2, import_max_columns=3))
    path = tmp_path / "rows.csv"
    path.write_text("nom\nA\nB\nC\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="plus de 2 lignes"):
        read_table(path, limits=limits)
    path.write_text("nom,a,b,c\nA,1,2,3\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="4 colonnes : au plus 3"):
        read_table(path, limits=limits)


def test_csv_field_over_the_csv_limit_is_a_clear_error(
    clean_registry: sa.Engine, tmp_path: Path
) -> None:
    """A field past the csv module's limit (an unclosed quote, a 65 MB cell): file, line, reason."""
    from carteco.importer.readers import MAX_CSV_FIELD

    path = tmp_path / "enorme.csv"
    with path.open("wb") as fh:
        fh.write(b'nom,services\nA,court\nB,"')
        fh.write(b"x" * (MAX_CSV_FIELD + 1024))
        fh.write(b'"\n')
    with pytest.raises(ImportFileError) as exc:
        _import(clean_registry, path, "enorme")
    message = str(exc.value)
    assert "enorme.csv, ligne 3" in message and "cellule trop longue" in message, message
    assert _count(clean_registry) == 0


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (".", None, "dossier"),
        ("..", None, "dossier"),
        ("deep.geojson", b'{"type": "FeatureCollection", "features": ' + b"[" * 50_000, "imbriqué"),
        ("five.geojson", b'{"type": "FeatureCollection", "features": 5}', "« features »"),
    ],
)
def test_cli_import_of_bad_paths_and_shapes(
    database_url: str, tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url, "COLUMNS": "200"}
    res = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "import", name],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 1, (res.stdout, res.stderr)
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "Error" not in out, out
    assert reason in out and name in out, out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("structures.csv", "structures.csv"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\cress\\liste.xlsx", "liste.xlsx"),
        (".", None),
        ("..", None),
        ("", None),
        (None, None),
        ("a/", None),
        (" .. ", None),
        ("a\x00b.csv", None),
        ("a\x1bb.csv", None),
        ("x" * 300, None),
    ],
)
def test_safe_file_name(raw: str | None, expected: str | None) -> None:
    from carteco.importer import safe_file_name

    if expected is None:
        with pytest.raises(ImportFileError, match="nom de fichier"):
            safe_file_name(raw)
    else:
        assert safe_file_name(raw) == expected


def test_sirene_ess_flag_and_overseas_rna(clean_registry: sa.Engine, tmp_path: Path) -> None:
    """Real SIRENE rows: the ESS flag makes commercial companies ESS; W2B/W9R RNA accepted."""
    with (FIXTURES / "ess" / "ess_numerique_sirene_2026.csv").open(encoding="utf-8") as fh:
        sample = {r["siren"]: r for r in csv.DictReader(fh)}
    expected = {
        "100070044": "societe_commerciale_ess",  # SAS 5710, flag O (was "inconnue")
        "100220466": "societe_commerciale_ess",
        "344671490": "inconnue",  # SAS 5710 without the flag
        "310238894": "cooperative",  # SA coopérative 5560, flagged: the category decides
        "450584206": "association",  # Haute-Corse, RNA W2B2007117
        "490016284": "association",  # La Réunion, RNA W9R1001315
    }
    # The SIRENE stock's own headers (camelCase) and its O/N flag.
    path = tmp_path / "StockUniteLegale_extrait.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "siren",
                "denominationUniteLegale",
                "categorieJuridiqueUniteLegale",
                "economieSocialeSolidaireUniteLegale",
                "identifiantAssociationUniteLegale",
            ]
        )
        for siren in expected:
            r = sample[siren]
            flag = "O" if r["flag_ess_sirene"] == "True" else "N"
            w.writerow([siren, r["denomination"], r["categorie_juridique"], flag, r["rna"]])
    result = _import(clean_registry, path, "sirene-extrait")
    assert (result.rows_read, result.created, result.rejected) == (6, 6, 0), result.as_dict()
    with clean_registry.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT siren, ess_family FROM structures")).all())
        rnas = set(
            conn.execute(sa.text("SELECT rna FROM structures WHERE rna IS NOT NULL")).scalars()
        )
    assert got == expected
    assert rnas == {"W2B2007117", "W9R1001315"}


def test_bad_ess_flag_is_a_row_error(clean_registry: sa.Engine, tmp_path: Path) -> None:
    path = tmp_path / "sirene.csv"
    path.write_text(
        "siren,denominationUniteLegale,categorieJuridiqueUniteLegale,"
        "economieSocialeSolidaireUniteLegale\n100070044,TEAM MOVE,5710,peut-être\n",
        encoding="utf-8",
    )
    report = _import(clean_registry, path, "sirene-bad")
    assert report.status == "rejected" and _count(clean_registry) == 0
    [err] = report.errors
    assert (err.row, err.column, err.value) == (
        2,
        "economieSocialeSolidaireUniteLegale",
        "peut-être",
    )
    assert "indicateur ESS" in err.reason


def test_gogocarto_statuses_decide_visibility(
    clean_registry: sa.Engine, client: object, tmp_path: Path
) -> None:
    """Deleted, refused and duplicate elements are hidden, pending ones pending: not served."""
    doc = json.loads((FIXTURES / "gogocarto" / "transiscope_elements.json").read_text("utf-8"))
    # Real elements, each given one GoGoCarto status (the last one none, as in old exports).
    codes: list[int | str | None] = [-6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, "7", None]
    elements = doc["data"][: len(codes)]
    for el, code in zip(elements, codes, strict=True):
        if code is not None:
            el["status"] = code
    path = tmp_path / "elements.json"
    path.write_text(json.dumps({**doc, "data": elements}), encoding="utf-8")
    report = _import(
        clean_registry, path, "transiscope", FIXTURES / "gogocarto" / "transiscope.mapping.toml"
    )
    assert (report.created, report.rejected) == (len(codes), 0), report.errors[:3]
    with clean_registry.connect() as conn:
        rows = conn.execute(sa.text("SELECT source_id, status, id FROM structures")).all()
    got = {r.source_id: r.status for r in rows}
    ids = {r.source_id: r.id for r in rows}
    want = ["hidden"] * 4 + ["pending"] * 2 + ["active"] * 8
    assert [got[el["id"]] for el in elements] == want

    # Public reads: items and one item show only the public statuses.
    items = client.get("/collections/structures/items", params={"limit": 100})  # type: ignore[attr-defined]
    assert items.status_code == 200
    served = {f["id"] for f in items.json()["features"]}
    assert served == {ids[el["id"]] for el in elements[6:]}
    for el in elements[:6]:
        one = client.get(f"/collections/structures/items/{ids[el['id']]}")  # type: ignore[attr-defined]
        assert one.status_code == 404
    assert client.get(f"/collections/structures/items/{ids[elements[6]['id']]}").status_code == 200  # type: ignore[attr-defined]

    # An element later deleted at the source becomes hidden on re-import.
    elements[6]["status"] = -4
    path.write_text(json.dumps({**doc, "data": elements}), encoding="utf-8")
    again = _import(
        clean_registry, path, "transiscope", FIXTURES / "gogocarto" / "transiscope.mapping.toml"
    )
    assert again.updated == 1
    assert _count(clean_registry, "source_id = :s AND status = 'hidden'", s=elements[6]["id"]) == 1


def test_unknown_gogocarto_status_is_a_row_error(clean_registry: sa.Engine, tmp_path: Path) -> None:
    doc = json.loads((FIXTURES / "gogocarto" / "transiscope_elements.json").read_text("utf-8"))
    elements = doc["data"][:2]
    elements[1]["status"] = 42
    path = tmp_path / "elements.json"
    path.write_text(json.dumps({**doc, "data": elements}), encoding="utf-8")
    report = _import(
        clean_registry, path, "transiscope-bad", FIXTURES / "gogocarto" / "transiscope.mapping.toml"
    )
    assert report.status == "rejected" and _count(clean_registry) == 0
    [err] = report.errors
    assert (err.row, err.column, err.value) == (2, "statut_gogocarto", "42")


def test_a_busy_source_waits_then_says_so(
    clean_registry: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import of a source another import holds waits for it, then fails in plain words.

    What a rerun right after a killed import meets while PostgreSQL finishes the dead one's
    statement: it used to die on the statement timeout with a SQL traceback.
    """
    from carteco.errors import CartecoError
    from carteco.importer import skeleton

    path = tmp_path / "liste.csv"
    path.write_text("nom;commune\nAtelier du lien;Montreuil\n", encoding="utf-8")
    monkeypatch.setattr(skeleton, "SOURCE_LOCK_WAIT_S", 1.0)
    with clean_registry.connect() as holder, holder.begin():
        holder.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock || :s))"),
            {"lock": "carteco-import:", "s": "liste"},
        )
        with pytest.raises(CartecoError) as caught:
            run_import(clean_registry, path, source="liste")
    assert caught.value.kind == "conflict"
    assert "« liste » est déjà en cours" in str(caught.value)
    # Once the other import is over, the same import goes through.
    assert run_import(clean_registry, path, source="liste").status == "succeeded"
