"""The bulk import path gives the registry the row path gives: two databases, one file each way.

Also: dry run, --skip-invalid, progress reported on GET /imports/{id}, and an import killed
mid-way leaves the registry as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carteco import db
from carteco.importer import run_import
from carteco.importer.readers import ReadLimits
from tests.conftest import REGISTRY_TABLES, create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "nom;siret;rna;adresse;code postal;commune;latitude;longitude;secteur;date_creation;"
    "esus;remarque\n"
)
# ESUS flags and an unmapped column (kept in `extra`) whose text the staging must carry as is:
# quotes, backslash, braces and commas, as in an array or JSON literal.
_TAILS = ("oui;", ';"dit ""le {grand}"", c:\\temp"', "non;{a,b}", ";")


def _luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def siret(n: int) -> str:
    """A Luhn-valid SIRET (its SIREN valid too)."""
    return _luhn(_luhn(f"{n:08d}") + "0001")


def _rows(changed: bool = False) -> list[str]:
    """Every case the two paths must treat alike."""
    rows = []
    for i in range(1, 121):
        lat, lon = 48.80 + (i % 40) * 0.003, 2.25 + (i // 3) * 0.004
        name = f"Structure {i}" + (" (modifiée)" if changed and i % 10 == 0 else "")
        coords = ("", "") if i % 25 == 0 else (f"{lat:.6f}", f"{lon:.6f}")
        if changed and i % 30 == 1:
            coords = ("", "")  # the source loses the point: the registry keeps it
        rows.append(
            f"{name};{siret(i)};;{i} rue de la Paix;75011;Paris;{coords[0]};{coords[1]};"
            f"Réemploi;2019-0{1 + i % 9}-15"
        )
    # Duplicates within the file: one structure, sectors merged, empty fields filled.
    rows.append(f"Structure 7 bis;{siret(7)};;;75011;Paris;;;Réparation;")
    rows.append("Doublon sans siret;;W751000001;1 rue Oberkampf;75011;Paris;;;Collecte;")
    rows.append("Doublon sans siret;;W751000001;;75011;Paris;48.865;2.37;Réemploi;")
    # Matches structures of another source by SIRET (one), ambiguous SIRET then RNA, by RNA.
    rows.append(f"Ressourcerie connue;{siret(901)};;;75011;Paris;48.86;2.38;Réemploi;")
    rows.append(f"Deux établissements;{siret(902)};W751000902;;;;;;Réparation;")
    rows.append("Association connue;;W751000903;;;;48.87;2.36;Collecte;")
    # Outside the IDF communes: nearest commune within 2 km, else département, else région.
    rows.append(f"Près de la limite;{siret(950)};;;;;49.2460;1.6100;Réemploi;")
    rows.append(f"À Lyon;{siret(951)};;;69001;Lyon;45.7640;4.8357;Réemploi;")
    # Text that COPY's format must escape: backslash, tab, a line break inside quotes.
    rows.append(f"Atelier \\ du\tcoin;{siret(980)};;2\\4 rue\tBasse;75011;Paris;;;Réemploi;")
    rows.append(f'"Relais\nsur deux lignes ""cité""";{siret(981)};;;75011;Paris;;;Collecte;')
    # Rows with errors.
    rows.append("Mauvais SIRET;12345678901234;;;;;48.85;2.35;Réemploi;")
    rows.append(f"Mauvaise latitude;{siret(960)};;;;;quarante;2.35;Réemploi;")
    rows.append(f";{siret(961)};;;;;48.85;2.35;Réemploi;")
    if changed:
        rows.append(f"Nouvelle;{siret(970)};;;75011;Paris;48.85;2.35;Réemploi;")
    return rows


def _lines(changed: bool = False) -> list[str]:
    """The rows with their ESUS and unmapped cells."""
    return [f"{r};{_TAILS[i % len(_TAILS)]}" for i, r in enumerate(_rows(changed))]


def write(path: Path, changed: bool = False, repeat: int = 1) -> Path:
    """The comparison file (`repeat` copies of the rows make it big enough for the bulk path)."""
    with path.open("w", encoding="utf-8") as f:
        f.write(HEADER)
        for _ in range(repeat):
            f.write("\n".join(_lines(changed)) + "\n")
    return path


_OTHER = [
    ("Ressourcerie (SIRENE)", siret(901), None),
    ("Établissement A", siret(902), "W751000902"),
    ("Établissement B", siret(902), None),
    ("Asso (RNA)", None, "W751000903"),
]


def _seed(engine: sa.Engine) -> None:
    """Empty registry, then structures of another source for the SIRET/RNA matches."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("TRUNCATE tile_grid"))
        for i, (name, s, rna) in enumerate(_OTHER):
            sid = conn.execute(
                sa.text(
                    "INSERT INTO structures (name, siret, rna, source, source_id, content_hash, "
                    "geom, location_precision) VALUES (:n, :s, :r, 'sirene', :i, 'h', "
                    "CASE WHEN :i = 'o0' THEN ST_SetSRID(ST_MakePoint(2.381, 48.861), 4326) END, "
                    "CASE WHEN :i = 'o0' THEN 'provided' END) RETURNING id"
                ),
                {"n": name, "s": s, "r": rna, "i": f"o{i}"},
            ).scalar_one()
            conn.execute(
                sa.text("INSERT INTO structure_sources VALUES ('sirene', :i, :id, 'h')"),
                {"i": f"o{i}", "id": sid},
            )


def registry(engine: sa.Engine) -> dict[str, Any]:
    """Everything an import writes, ids aside."""
    with engine.connect() as conn:
        structures = [
            dict(r)
            for r in conn.execute(
                sa.text(
                    """
                    SELECT to_jsonb(s) - 'id' - 'created_at' - 'updated_at' - 'located_at'
                           - 'search' - 'valid_from' AS row,
                           (s.located_at IS NULL) AS unlocated,
                           (s.updated_at > s.created_at) AS touched,
                           (s.valid_from > s.created_at) AS new_state
                      FROM structures s ORDER BY s.source, s.source_id
                    """
                )
            ).mappings()
        ]
        links = conn.execute(
            sa.text(
                """
                SELECT l.source, l.source_id, s.source AS owner, s.source_id AS owner_id,
                       l.content_hash
                  FROM structure_sources l JOIN structures s ON s.id = l.structure_id
                 ORDER BY 1, 2
                """
            )
        ).all()
        grid = conn.execute(
            sa.text("SELECT z, cx, cy, sector, n, sx, sy FROM tile_grid ORDER BY 1, 2, 3, 4")
        ).all()
        # The history (carteco/history.py): every version, ids and instants aside.
        history = conn.execute(
            sa.text(
                """
                SELECT s.source, s.source_id,
                       v.data - 'id' - 'created_at' - 'updated_at' - 'located_at' AS data,
                       ST_AsEWKB(v.geom) AS geom, v.changed_by, v.import_run_id,
                       v.valid_to IS NULL AS current, v.valid_to = v.valid_from AS empty
                  FROM structure_versions v JOIN structures s ON s.id = v.structure_id
                 ORDER BY s.source, s.source_id, v.valid_from, v.id
                """
            )
        ).all()
        # Ids aside, but in the same order: the file's.
        order = conn.execute(sa.text("SELECT source, source_id FROM structures ORDER BY id")).all()
    return {
        "structures": structures,
        "links": links,
        "grid": grid,
        "history": history,
        "order": order,
    }


def _summary(report: Any) -> dict[str, Any]:
    d = report.as_dict()
    out = {k: d[k] for k in ("status", "rows_read", "created", "updated", "unchanged",
                             "rejected", "errors", "message", "missing")}  # fmt: skip
    if out["missing"]:
        out["missing"] = {
            **out["missing"],
            "structures": [
                {k: v for k, v in st.items() if k != "id"} for st in out["missing"]["structures"]
            ],
        }
    # The import's review: possible duplicates and field conflicts (ids aside).
    out["possible_duplicates"] = d.get("possible_duplicates")
    out["field_conflicts"] = d.get("field_conflicts")
    out["conflicts"] = sorted(
        ({k: v for k, v in c.items() if k != "structure_id"} for c in d.get("conflicts", [])),
        key=lambda c: str(c["source_id"]),
    )
    return out


@pytest.fixture(scope="module")
def second_engine() -> Iterator[sa.Engine]:
    """A second migrated database with the reference layers (the bulk path's)."""
    from carteco.sectors import sync_sectors
    from geodata.loader import load_all

    url = create_database("carteco_bulk")
    db.upgrade(url)
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        sync_sectors(conn)
        load_all(conn)
    yield eng
    eng.dispose()
    drop_database(url)


def test_row_and_bulk_paths_give_the_same_registry(
    engine: sa.Engine, second_engine: sa.Engine, tmp_path: Path
) -> None:
    """Errors, duplicates, rows without point, SIRET/RNA matches, fallbacks, then a re-import."""
    first, second = write(tmp_path / "liste.csv"), write(tmp_path / "liste2.csv", changed=True)
    _seed(engine)
    _seed(second_engine)
    conflicts = []
    for workers, path in ((1, first), (2, second), (1, second)):
        row = run_import(engine, path, source="liste", skip_invalid=True, bulk=False)
        big = run_import(
            second_engine, path, source="liste", skip_invalid=True, bulk=True, workers=workers
        )
        assert row.status == "succeeded"
        assert _summary(big) == _summary(row)
        assert registry(second_engine) == registry(engine)
        conflicts.append(big.review["field_conflicts"])
    assert (big.created, big.updated) == (0, 0)
    assert row.rejected == 3 and len(row.errors) == 3
    # Both paths reported (the same, compared above) the rows matched to the other source's
    # structures by SIRET or RNA whose name or commune differ.
    assert conflicts[0] > 0
    with second_engine.connect() as conn:
        codes = dict(
            conn.execute(
                sa.text(
                    "SELECT name, concat_ws('/', commune_code, departement_code, region_code) "
                    "FROM structures WHERE name IN ('Près de la limite', 'À Lyon')"
                )
            ).all()
        )
        versions = conn.execute(sa.text("SELECT max(version) FROM structures")).scalar_one()
        typed = conn.execute(
            sa.text(
                "SELECT count(*) FILTER (WHERE esus), "
                "count(*) FILTER (WHERE extra->>'remarque' = 'dit \"le {grand}\", c:\\temp'), "
                "count(*) FILTER (WHERE cardinality(sectors) > 1), "
                "count(*) FILTER (WHERE strpos(name || address_line, chr(92)) > 0) "
                "FROM structures"
            )
        ).one()
    # Values of every staged type went through: boolean, JSON, array, escaped text.
    assert all(n > 0 for n in typed), typed
    assert codes["À Lyon"] == "69123/69/84"
    assert codes["Près de la limite"].count("/") == 2  # a commune near the boundary
    assert versions == 2  # one change, one new version (then nothing on the second re-import)


def test_row_and_bulk_paths_close_missing_structures_alike(
    engine: sa.Engine, second_engine: sa.Engine, tmp_path: Path
) -> None:
    """--missing close: the structures absent from a re-import closed (and versioned) alike."""
    full = write(tmp_path / "liste.csv")
    part = tmp_path / "partielle.csv"
    part.write_text(HEADER + "\n".join(_lines()[:80]) + "\n", encoding="utf-8")
    _seed(engine)
    _seed(second_engine)
    for path, missing in ((full, "flag"), (part, "close"), (full, "close")):
        row = run_import(
            engine, path, source="liste", skip_invalid=True, bulk=False, missing=missing
        )
        big = run_import(
            second_engine, path, source="liste", skip_invalid=True, bulk=True, missing=missing
        )
        assert row.status == big.status == "succeeded"
        assert _summary(big) == _summary(row)
        assert registry(second_engine) == registry(engine)
        if path == part:
            assert row.missing["applied"] == "close" and row.missing["count"] > 0
        if path == full and missing == "close":
            assert row.missing["back"] > 0  # reopened: back in the file
    with second_engine.connect() as conn:
        authors = set(
            conn.execute(sa.text("SELECT DISTINCT changed_by FROM structure_versions")).scalars()
        )
    assert "import:liste" in authors


def _index_definitions(engine: sa.Engine) -> list[str]:
    """The indexes and the constraints (foreign keys included, validated) of both tables."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT indexdef FROM pg_indexes WHERE tablename IN "
                    "('structures', 'structure_sources') ORDER BY indexname"
                )
            ).scalars()
        ) + [
            f"{r.conname} {r.definition} {r.convalidated}"
            for r in conn.execute(
                sa.text(
                    "SELECT conname, pg_get_constraintdef(oid) AS definition, convalidated "
                    "FROM pg_constraint WHERE conrelid IN "
                    "('structures'::regclass, 'structure_sources'::regclass) ORDER BY conname"
                )
            )
        ]


def test_first_bulk_import_rebuilds_the_indexes(
    engine: sa.Engine, second_engine: sa.Engine, tmp_path: Path
) -> None:
    """Into an empty registry the bulk path drops and rebuilds its indexes and the links'
    foreign key: same registry, same indexes and constraints."""
    path = write(tmp_path / "liste.csv")
    for eng in (engine, second_engine):
        with eng.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY CASCADE"))
            conn.execute(sa.text("TRUNCATE tile_grid"))
    before = _index_definitions(second_engine)
    assert any("USING gin" in d for d in before)
    assert any(d.startswith("structure_sources_structure_id_fkey FOREIGN KEY") for d in before)
    row = run_import(engine, path, source="liste", skip_invalid=True, bulk=False)
    big = run_import(second_engine, path, source="liste", skip_invalid=True, bulk=True)
    assert _summary(big) == _summary(row) and big.created > 100
    assert registry(second_engine) == registry(engine)
    assert _index_definitions(second_engine) == before
    with second_engine.connect() as conn:
        valid = conn.execute(
            sa.text(
                "SELECT bool_and(x.indisvalid) FROM pg_index x "
                "WHERE x.indrelid = 'structures'::regclass"
            )
        ).scalar_one()
    assert valid


def test_bulk_dry_run_and_invalid_rows(engine: sa.Engine, tmp_path: Path) -> None:
    """A dry run writes nothing; without --skip-invalid an invalid row writes nothing."""
    _seed(engine)
    path = write(tmp_path / "liste.csv")
    before = registry(engine)
    refused = run_import(engine, path, source="liste", bulk=True)
    assert refused.status == "rejected" and refused.rejected == 3
    assert refused.message == "3 ligne(s) invalide(s) : rien n'a été écrit"
    assert refused.errors[0].message("liste.csv").startswith("liste.csv, ligne ")
    dry = run_import(engine, path, source="liste", bulk=True, dry_run=True, skip_invalid=True)
    assert dry.status == "dry_run" and dry.created > 0
    assert registry(engine) == before
    done = run_import(engine, path, source="liste", bulk=True, skip_invalid=True)
    assert (done.created, done.rejected) == (dry.created, 3)


def test_threshold_chooses_the_bulk_path(engine: sa.Engine, tmp_path: Path) -> None:
    """Above CARTECO_BULK_IMPORT_MIN_ROWS a CSV takes the bulk path by itself."""
    _seed(engine)
    path = write(tmp_path / "liste.csv", repeat=3)
    seen: list[tuple[int, int]] = []
    report = run_import(
        engine,
        path,
        source="liste",
        skip_invalid=True,
        limits=ReadLimits(bulk_min_rows=100),
        progress=lambda done, total, **_: seen.append((done, total)),
    )
    assert report.status == "succeeded" and report.rows_read == 3 * 133
    # The bulk path reports each batch of 5,000 rows, then the end; the row path every 200.
    assert seen[-1] == (report.rows_read, report.rows_read)
    assert seen[0][0] == report.rows_read, seen  # 399 rows: one batch


def _checksum(engine: sa.Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                sa.text(
                    "SELECT count(*), md5(coalesce(string_agg(md5(to_jsonb(s)::text), '' "
                    "ORDER BY id), '')) FROM structures s"
                )
            ).one()
        )


def _live_processes(path: Path) -> dict[int, str]:
    """Live processes whose command line names `path` (an import of it, its workers)."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in text and state != "Z":  # a zombie holds no socket
            found[int(cmdline.parent.name)] = text.strip()
    return found


def test_killed_bulk_import_leaves_the_registry_as_it_was(
    engine: sa.Engine, settings: Any, tmp_path: Path
) -> None:
    """kill -9 in the middle of a bulk import: same count and checksum, the run marked failed."""
    _seed(engine)
    first = run_import(engine, write(tmp_path / "petit.csv"), source="liste", skip_invalid=True)
    assert first.status == "succeeded"
    before = _checksum(engine)
    path = write(tmp_path / "liste.csv", changed=True, repeat=400)  # ~53,000 rows
    env = {**os.environ, "CARTECO_DATABASE_URL": settings.database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "carteco.cli", "import", str(path), "--source", "liste",
         "--skip-invalid", "--bulk"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Inside the import's one transaction: the COPY into staging or the set-based writes. On a
    # quiet machine the INSERT alone is over in a blink; any of these is "in the middle".
    writing = (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        "AND datname = current_database() AND pid <> pg_backend_pid() "
        "AND (query LIKE '%INSERT INTO structures%' OR query LIKE '%bulk_stage%')"
    )
    try:
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while not conn.execute(sa.text(writing)).scalar_one():  # the set-based INSERT
                conn.commit()
                if proc.poll() is not None:
                    pytest.fail(f"import ended before it could be killed: {proc.stderr.read()}")  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the import never reached its INSERT"
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 in the middle of the writing
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Nothing of the import outlives it: its forked validation workers inherited its
    # connection, and one left alive kept the backend in COPY, blocking every DROP DATABASE.
    deadline = time.monotonic() + 60  # PostgreSQL notices the dead client, rolls back
    left = ["?"]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        with engine.connect() as conn:
            busy = conn.execute(sa.text(writing.replace("state = 'active' AND ", ""))).scalar()
        left = list(_live_processes(path).values()) + (["backend"] if busy else [])
    if left:  # not to leave them blocking the rest of the run
        for pid in _live_processes(path):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"still alive after the import was killed: {left}"
    assert _checksum(engine) == before
    from carteco.importer.pipeline import reap_dead_runs

    deadline = time.monotonic() + 10
    while reap_dead_runs(engine) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM import_runs ORDER BY id")).scalars()
        assert list(statuses) == ["succeeded", "failed"]


def test_progress_on_get_imports(client: Any, engine: sa.Engine, tmp_path: Path) -> None:
    """GET /imports/{id} says how far a running import is, then how many rows it read."""
    from carteco.auth import create_token

    _seed(engine)
    with engine.begin() as conn:
        _, token = create_token(conn, "progression", ["import"])
    h = {"Authorization": f"Bearer {token}"}
    path = write(tmp_path / "liste.csv", repeat=400)  # ~52,000 rows: the bulk path by default
    with path.open("rb") as f:
        r = client.post(
            "/imports",
            files={"file": (path.name, f, "text/csv")},
            data={"source": "liste", "skip_invalid": "true"},
            headers=h,
        )
    assert r.status_code == 202, r.text
    url = r.headers["location"].replace("http://testserver", "")
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(url, headers=h).json()
        if job["status"] == "running" and job["progress"]:
            seen.append(job["progress"])
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert seen, "no progress seen while the import ran"
    assert 0 < seen[0]["rows_done"] <= seen[0]["rows_expected"]
    assert seen[0]["rows_per_s"] > 0 and seen[0]["eta_s"] is not None
    assert job["progress"]["rows_done"] == job["report"]["rows_read"] == 400 * 133


def test_history_versions_are_the_rows_as_json(engine: sa.Engine, tmp_path: Path) -> None:
    """A version's data is to_jsonb(row) less search, geom and the provenance columns (0016,
    0027), computed the cheaper way (0021): for the ended states the UPDATE trigger records,
    and for the current states the structure_versions view lists."""
    _seed(engine)
    run_import(engine, write(tmp_path / "liste.csv"), source="liste", skip_invalid=True)
    row = "to_jsonb(s) - 'search' - 'geom' - 'valid_from' - 'changed_by' - 'import_run_id'"
    with engine.begin() as conn:
        before = dict(
            conn.execute(
                sa.text(f"SELECT id, {row} FROM structures s WHERE id % 7 = 0")  # noqa: S608
            ).all()
        )
        conn.execute(sa.text("UPDATE structures SET name = name || ' (bis)' WHERE id % 7 = 0"))
        ended = dict(
            conn.execute(
                sa.text(
                    "SELECT structure_id, data FROM structure_past_versions WHERE valid_to = now()"
                )
            ).all()
        )
        rows = conn.execute(
            sa.text(
                f"""
                SELECT count(*), count(*) FILTER (WHERE v.data = {row}),
                       count(s.geom_l93), count(*) FILTER (WHERE s.version > 1)
                  FROM structure_versions v JOIN structures s ON s.id = v.structure_id
                 WHERE v.valid_to IS NULL
                """  # noqa: S608
            )
        ).one()
    assert len(before) > 10 and ended == before
    total, same, located, updated = rows
    assert total == same > 100
    assert 0 < located < total and updated > 10  # with and without a point; updated rows too
